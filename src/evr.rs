//! Epoch/version/release values and the two orderings UYUNI uses: dpkg's for Debian and
//! Ubuntu, rpmvercmp for RHEL.

use std::cmp::Ordering;
use std::fmt;

/// Which package manager's ordering (and version syntax) applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PkgKind {
    /// dpkg ordering; version strings `[epoch:]upstream[-revision]`.
    Deb,
    /// rpmvercmp ordering; version strings `[epoch:]version-release`.
    Rpm,
}

/// An epoch/version/release triple as UYUNI stores it (version and release split).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Evr {
    /// The epoch; `None` when the package has none (compares like 0).
    pub epoch: Option<u32>,
    /// Upstream version.
    pub version: String,
    /// Release (rpm) or Debian revision; may be empty for native Debian packages.
    pub release: String,
}

/// A version string that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid version {text:?}: {reason}")]
pub struct EvrError {
    /// The offending text.
    pub text: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Evr {
    /// Parse `[epoch:]version[-release]`; the release is split at the last hyphen.
    /// An rpm version must have a release.
    pub fn parse(kind: PkgKind, text: &str) -> Result<Evr, EvrError> {
        let err = |reason| EvrError {
            text: text.to_string(),
            reason,
        };
        if text.is_empty() || text.chars().any(char::is_whitespace) {
            return Err(err("empty or contains whitespace"));
        }
        let (epoch, rest) = match text.split_once(':') {
            Some((e, rest)) => {
                let e: u32 = e.parse().map_err(|_| err("epoch is not a number"))?;
                (Some(e), rest)
            }
            None => (None, text),
        };
        let (version, release) = match rest.rsplit_once('-') {
            Some((v, r)) => (v, r),
            None if kind == PkgKind::Deb => (rest, ""),
            None => return Err(err("rpm version needs a release (version-release)")),
        };
        if version.is_empty() || !version.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(err("version must start with a letter or digit"));
        }
        if kind == PkgKind::Rpm && release.is_empty() {
            return Err(err("empty release"));
        }
        Ok(Evr {
            epoch,
            version: version.to_string(),
            release: release.to_string(),
        })
    }

    /// Compare with the ordering of `kind`.
    pub fn cmp_with(&self, other: &Evr, kind: PkgKind) -> Ordering {
        let e = self.epoch.unwrap_or(0).cmp(&other.epoch.unwrap_or(0));
        if e != Ordering::Equal {
            return e;
        }
        let cmp = match kind {
            PkgKind::Deb => dpkg_vercmp,
            PkgKind::Rpm => rpmvercmp,
        };
        cmp(&self.version, &other.version).then_with(|| cmp(&self.release, &other.release))
    }

    /// The epoch as UYUNI prints it in most structs: the number, or "" when none.
    pub fn epoch_str(&self) -> String {
        self.epoch.map(|e| e.to_string()).unwrap_or_default()
    }
}

impl fmt::Display for Evr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(e) = self.epoch {
            write!(f, "{e}:")?;
        }
        f.write_str(&self.version)?;
        if !self.release.is_empty() {
            write!(f, "-{}", self.release)?;
        }
        Ok(())
    }
}

/// rpm's `rpmvercmp` for one version or release string.
pub fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    let sep = |c: u8| !c.is_ascii_alphanumeric() && c != b'~' && c != b'^';
    loop {
        while let Some((&c, rest)) = x.split_first() {
            if !sep(c) {
                break;
            }
            x = rest;
        }
        while let Some((&c, rest)) = y.split_first() {
            if !sep(c) {
                break;
            }
            y = rest;
        }
        // Tilde sorts before everything, even the end of the string.
        if x.first() == Some(&b'~') || y.first() == Some(&b'~') {
            if x.first() != Some(&b'~') {
                return Ordering::Greater;
            }
            if y.first() != Some(&b'~') {
                return Ordering::Less;
            }
            x = &x[1..];
            y = &y[1..];
            continue;
        }
        // Caret sorts after the end of the string but before anything else.
        if x.first() == Some(&b'^') || y.first() == Some(&b'^') {
            if x.is_empty() {
                return Ordering::Less;
            }
            if y.is_empty() {
                return Ordering::Greater;
            }
            if x.first() != Some(&b'^') {
                return Ordering::Greater;
            }
            if y.first() != Some(&b'^') {
                return Ordering::Less;
            }
            x = &x[1..];
            y = &y[1..];
            continue;
        }
        if x.is_empty() || y.is_empty() {
            break;
        }
        let numeric = x[0].is_ascii_digit();
        let take = |s: &[u8]| -> usize {
            s.iter()
                .take_while(|c| {
                    if numeric {
                        c.is_ascii_digit()
                    } else {
                        c.is_ascii_alphabetic()
                    }
                })
                .count()
        };
        let (nx, ny) = (take(x), take(y));
        let (sx, sy) = (&x[..nx], &y[..ny]);
        if sy.is_empty() {
            // Different segment types: numeric is newer than alphabetic.
            return if numeric {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        let ord = if numeric {
            let strip = |s: &[u8]| -> usize { s.iter().take_while(|&&c| c == b'0').count() };
            let (tx, ty) = (&sx[strip(sx)..], &sy[strip(sy)..]);
            tx.len().cmp(&ty.len()).then_with(|| tx.cmp(ty))
        } else {
            sx.cmp(sy)
        };
        if ord != Ordering::Equal {
            return ord;
        }
        x = &x[nx..];
        y = &y[ny..];
    }
    match (x.is_empty(), y.is_empty()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        _ => Ordering::Greater,
    }
}

/// dpkg's `verrevcmp` for one upstream version or revision string.
pub fn dpkg_vercmp(a: &str, b: &str) -> Ordering {
    fn order(c: Option<u8>) -> i32 {
        match c {
            None => 0,
            Some(c) if c.is_ascii_digit() => 0,
            Some(c) if c.is_ascii_alphabetic() => i32::from(c),
            Some(b'~') => -1,
            Some(c) => i32::from(c) + 256,
        }
    }
    let (x, y) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0usize, 0usize);
    let digit = |s: &[u8], k: usize| s.get(k).is_some_and(u8::is_ascii_digit);
    while i < x.len() || j < y.len() {
        while (i < x.len() && !digit(x, i)) || (j < y.len() && !digit(y, j)) {
            let (ac, bc) = (order(x.get(i).copied()), order(y.get(j).copied()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while x.get(i) == Some(&b'0') {
            i += 1;
        }
        while y.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while digit(x, i) && digit(y, j) {
            if first_diff == Ordering::Equal {
                first_diff = x[i].cmp(&y[j]);
            }
            i += 1;
            j += 1;
        }
        if digit(x, i) {
            return Ordering::Greater;
        }
        if digit(y, j) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    fn deb(a: &str, b: &str) -> Ordering {
        let (a, b) = (
            Evr::parse(PkgKind::Deb, a).unwrap(),
            Evr::parse(PkgKind::Deb, b).unwrap(),
        );
        a.cmp_with(&b, PkgKind::Deb)
    }
    fn rpm(a: &str, b: &str) -> Ordering {
        let (a, b) = (
            Evr::parse(PkgKind::Rpm, a).unwrap(),
            Evr::parse(PkgKind::Rpm, b).unwrap(),
        );
        a.cmp_with(&b, PkgKind::Rpm)
    }

    #[test]
    fn dpkg_ordering_edge_cases() {
        assert_eq!(dpkg_vercmp("1.0~rc1", "1.0"), Less);
        assert_eq!(dpkg_vercmp("1.0~~", "1.0~"), Less);
        assert_eq!(dpkg_vercmp("1.0", "1.0+b1"), Less);
        assert_eq!(dpkg_vercmp("1.0a", "1.0"), Greater);
        assert_eq!(
            dpkg_vercmp("1.0a", "1.0+"),
            Less,
            "letters sort before non-letters"
        );
        assert_eq!(dpkg_vercmp("1.10", "1.9"), Greater);
        assert_eq!(dpkg_vercmp("1.01", "1.1"), Equal);
        assert_eq!(dpkg_vercmp("", "0"), Equal);
        assert_eq!(deb("3.0.13-0ubuntu3.4", "3.0.13-0ubuntu3.5"), Less);
        assert_eq!(deb("1:1.0-1", "2.0-1"), Greater, "epoch wins");
        assert_eq!(deb("2.36-9+deb12u4", "2.36-9+deb12u10"), Less);
        assert_eq!(deb("3.0.15-1~deb12u1", "3.0.15-1"), Less);
        assert_eq!(deb("1.2", "1.2-0"), Equal, "missing revision equals 0");
    }

    #[test]
    fn rpm_ordering_edge_cases() {
        assert_eq!(rpmvercmp("1.0~rc1", "1.0"), Less);
        assert_eq!(rpmvercmp("1.0^git1", "1.0"), Greater);
        assert_eq!(rpmvercmp("1.0^git1", "1.0.1"), Less);
        assert_eq!(rpmvercmp("1.0a", "1.0"), Greater);
        assert_eq!(
            rpmvercmp("1.a", "1.1"),
            Less,
            "digits are newer than letters"
        );
        assert_eq!(
            rpmvercmp("2.0.1", "2.0_1"),
            Equal,
            "separators are equivalent"
        );
        assert_eq!(rpmvercmp("1.010", "1.9"), Greater);
        assert_eq!(rpmvercmp("5.14.0", "5.14"), Greater);
        assert_eq!(rpm("1:3.0.7-24.el9", "3.5.0-1.el9"), Greater, "epoch wins");
        assert_eq!(rpm("5.14.0-427.13.1.el9_4", "5.14.0-503.11.1.el9_5"), Less);
        assert_eq!(rpm("0:1.0-1", "1.0-1"), Equal, "epoch 0 equals none");
    }

    #[test]
    fn parse_and_display() {
        let e = Evr::parse(PkgKind::Deb, "1:2.3-4ubuntu1-2").unwrap();
        assert_eq!(e.epoch, Some(1));
        assert_eq!(e.version, "2.3-4ubuntu1");
        assert_eq!(e.release, "2");
        assert_eq!(e.to_string(), "1:2.3-4ubuntu1-2");
        assert!(Evr::parse(PkgKind::Rpm, "1.0").is_err());
        assert!(Evr::parse(PkgKind::Deb, "x:1.0").is_err());
        assert!(Evr::parse(PkgKind::Deb, "").is_err());
        assert_eq!(Evr::parse(PkgKind::Deb, "9.7").unwrap().release, "");
    }
}
