//! Emulation of the POSIX shell scripts sent through `system.scheduleScriptRun`.
//!
//! Scripts are tokenized and parsed (quotes, backslashes, `;`, `&&`, `||`, `|`, newlines,
//! comments including the `#!` line, redirections), then run command by command against
//! one simulated system. Parameter expansion is not performed: `$` is literal, which is
//! what single-quoted format strings need. Supported commands are listed in
//! [`Shell::command`]; anything else exits 127 with `sh: 1: NAME: not found`.

use chrono::NaiveDateTime;

use super::evr::{Evr, PkgKind};
use super::model::{Catalog, Installed, Snapshot, System, UnitState};

/// A lexical token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// A word after quote removal.
    Word(String),
    /// `&&`.
    And,
    /// `||`.
    Or,
    /// `|`.
    Pipe,
    /// `;`, `&` or a newline.
    Sep,
    /// `[fd]>`, `[fd]>>`, `&>`, `[fd]<` (fd 255 means both 1 and 2), target follows.
    Redir(u8),
    /// `[fd]>&`, target fd follows.
    Dup(u8),
}

/// A syntax error in a script.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Syntax error: {0}")]
pub struct SyntaxError(pub String);

/// Split a script into tokens.
pub fn tokenize(src: &str) -> Result<Vec<Token>, SyntaxError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut i = 0;
    let flush = |word: &mut String, in_word: &mut bool, out: &mut Vec<Token>| {
        if *in_word {
            out.push(Token::Word(std::mem::take(word)));
            *in_word = false;
        }
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\r' => flush(&mut word, &mut in_word, &mut out),
            '\n' | ';' => {
                flush(&mut word, &mut in_word, &mut out);
                out.push(Token::Sep);
            }
            '#' if !in_word => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            '\'' => {
                in_word = true;
                i += 1;
                while i < chars.len() && chars[i] != '\'' {
                    word.push(chars[i]);
                    i += 1;
                }
                if i >= chars.len() {
                    return Err(SyntaxError("Unterminated quoted string".into()));
                }
            }
            '"' => {
                in_word = true;
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(SyntaxError("Unterminated quoted string".into())),
                        Some('"') => break,
                        Some('\\') if matches!(chars.get(i + 1), Some('$' | '`' | '"' | '\\')) => {
                            word.push(chars[i + 1]);
                            i += 2;
                        }
                        Some('\\') if chars.get(i + 1) == Some(&'\n') => i += 2,
                        Some(&ch) => {
                            word.push(ch);
                            i += 1;
                        }
                    }
                }
            }
            '\\' => match chars.get(i + 1) {
                Some('\n') => i += 1,
                Some(&ch) => {
                    in_word = true;
                    word.push(ch);
                    i += 1;
                }
                None => {}
            },
            '&' => {
                flush(&mut word, &mut in_word, &mut out);
                match chars.get(i + 1) {
                    Some('&') => {
                        out.push(Token::And);
                        i += 1;
                    }
                    Some('>') => {
                        out.push(Token::Redir(255));
                        i += 1;
                        if chars.get(i + 1) == Some(&'>') {
                            i += 1;
                        }
                    }
                    _ => out.push(Token::Sep),
                }
            }
            '|' => {
                flush(&mut word, &mut in_word, &mut out);
                if chars.get(i + 1) == Some(&'|') {
                    out.push(Token::Or);
                    i += 1;
                } else {
                    out.push(Token::Pipe);
                }
            }
            '>' | '<' => {
                // A word made only of digits right before the operator is the fd.
                let fd = if in_word && !word.is_empty() && word.chars().all(|d| d.is_ascii_digit())
                {
                    let n = word.parse::<u8>().unwrap_or(1);
                    word.clear();
                    in_word = false;
                    n
                } else {
                    flush(&mut word, &mut in_word, &mut out);
                    if c == '<' { 0 } else { 1 }
                };
                match chars.get(i + 1) {
                    Some('&') if c == '>' => {
                        out.push(Token::Dup(fd));
                        i += 1;
                    }
                    Some('>') if c == '>' => {
                        out.push(Token::Redir(fd));
                        i += 1;
                    }
                    _ => out.push(Token::Redir(fd)),
                }
            }
            _ => {
                in_word = true;
                word.push(c);
            }
        }
        i += 1;
    }
    flush(&mut word, &mut in_word, &mut out);
    Ok(out)
}

/// Where a file descriptor writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sink {
    Out,
    Err,
    Null,
}

/// One simple command with its redirections.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimpleCommand {
    /// Arguments, `argv[0]` is the command name (may be empty for pure assignments).
    pub argv: Vec<String>,
    /// Redirections, in order: `(fd, Some(target file) | None, dup target fd)`.
    redirs: Vec<(u8, Option<String>, Option<u8>)>,
}

/// A pipeline, optionally negated with `!`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pipeline {
    /// `!` in front.
    pub negate: bool,
    /// Stages.
    pub commands: Vec<SimpleCommand>,
}

/// Pipelines joined by `&&` / `||`: the first, then `(is_and, pipeline)`.
#[derive(Debug, Clone, PartialEq)]
pub struct AndOr {
    /// First pipeline.
    pub first: Pipeline,
    /// Followers.
    pub rest: Vec<(bool, Pipeline)>,
}

/// Parse tokens into a list of and-or lists.
pub fn parse(tokens: &[Token]) -> Result<Vec<AndOr>, SyntaxError> {
    let mut lists = Vec::new();
    let mut i = 0;
    let unexpected = |t: &Token| SyntaxError(format!("\"{}\" unexpected", token_text(t)));
    while i < tokens.len() {
        if tokens[i] == Token::Sep {
            i += 1;
            continue;
        }
        let mut first: Option<Pipeline> = None;
        let mut rest = Vec::new();
        let mut pending_and: Option<bool> = None;
        loop {
            // Allow newlines after && and ||.
            if pending_and.is_some() {
                while tokens.get(i) == Some(&Token::Sep) {
                    i += 1;
                }
            }
            let (p, next) = parse_pipeline(tokens, i)?;
            i = next;
            match pending_and {
                None => first = Some(p),
                Some(a) => rest.push((a, p)),
            }
            match tokens.get(i) {
                Some(Token::And) => pending_and = Some(true),
                Some(Token::Or) => pending_and = Some(false),
                Some(Token::Sep) | None => break,
                Some(t) => return Err(unexpected(t)),
            }
            i += 1;
            if i >= tokens.len() {
                return Err(SyntaxError("end of file unexpected".into()));
            }
        }
        if let Some(first) = first {
            lists.push(AndOr { first, rest });
        }
    }
    Ok(lists)
}

fn token_text(t: &Token) -> &str {
    match t {
        Token::Word(w) => w,
        Token::And => "&&",
        Token::Or => "||",
        Token::Pipe => "|",
        Token::Sep => ";",
        Token::Redir(_) => ">",
        Token::Dup(_) => ">&",
    }
}

fn parse_pipeline(tokens: &[Token], mut i: usize) -> Result<(Pipeline, usize), SyntaxError> {
    let mut p = Pipeline::default();
    if tokens.get(i) == Some(&Token::Word("!".into())) {
        p.negate = true;
        i += 1;
    }
    loop {
        let mut cmd = SimpleCommand::default();
        loop {
            match tokens.get(i) {
                Some(Token::Word(w)) => cmd.argv.push(w.clone()),
                Some(Token::Redir(fd)) => match tokens.get(i + 1) {
                    Some(Token::Word(t)) => {
                        cmd.redirs.push((*fd, Some(t.clone()), None));
                        i += 1;
                    }
                    _ => return Err(SyntaxError("redirection unexpected".into())),
                },
                Some(Token::Dup(fd)) => match tokens.get(i + 1) {
                    Some(Token::Word(t)) => {
                        let target = t
                            .parse::<u8>()
                            .map_err(|_| SyntaxError(format!("{t}: Bad fd number")))?;
                        cmd.redirs.push((*fd, None, Some(target)));
                        i += 1;
                    }
                    _ => return Err(SyntaxError("redirection unexpected".into())),
                },
                _ => break,
            }
            i += 1;
        }
        if cmd.argv.is_empty() && cmd.redirs.is_empty() {
            return Err(match tokens.get(i) {
                Some(t) => SyntaxError(format!("\"{}\" unexpected", token_text(t))),
                None => SyntaxError("end of file unexpected".into()),
            });
        }
        p.commands.push(cmd);
        if tokens.get(i) == Some(&Token::Pipe) {
            i += 1;
            continue;
        }
        return Ok((p, i));
    }
}

/// What a script run produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScriptRun {
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Exit status.
    pub code: i32,
    /// Whether installed packages changed (relevance must be recomputed).
    pub packages_changed: bool,
}

/// Run `script` on `sys`.
pub fn run_script(
    script: &str,
    sys: &mut System,
    catalog: &Catalog,
    now: NaiveDateTime,
) -> ScriptRun {
    let lists = match tokenize(script).and_then(|t| parse(&t)) {
        Ok(l) => l,
        Err(e) => {
            return ScriptRun {
                stderr: format!("sh: 1: {e}\n"),
                code: 2,
                ..ScriptRun::default()
            };
        }
    };
    let mut sh = Shell {
        sys,
        catalog,
        now,
        errexit: false,
        out: String::new(),
        err: String::new(),
        changed: false,
        exit: None,
    };
    let mut status = 0;
    for list in &lists {
        status = sh.run_pipeline(&list.first);
        let mut last_was_final = list.rest.is_empty();
        for (idx, (is_and, p)) in list.rest.iter().enumerate() {
            if sh.exit.is_some() {
                break;
            }
            if (*is_and && status == 0) || (!*is_and && status != 0) {
                status = sh.run_pipeline(p);
                last_was_final = idx + 1 == list.rest.len();
            }
        }
        if let Some(code) = sh.exit {
            status = code;
            break;
        }
        if sh.errexit && status != 0 && last_was_final && !list.first.negate {
            break;
        }
    }
    ScriptRun {
        stdout: sh.out,
        stderr: sh.err,
        code: status,
        packages_changed: sh.changed,
    }
}

struct Shell<'a> {
    sys: &'a mut System,
    catalog: &'a Catalog,
    now: NaiveDateTime,
    errexit: bool,
    out: String,
    err: String,
    changed: bool,
    exit: Option<i32>,
}

/// Output of one command.
#[derive(Default)]
struct Out {
    out: String,
    err: String,
    code: i32,
}

impl Out {
    fn ok(out: impl Into<String>) -> Out {
        Out {
            out: out.into(),
            ..Out::default()
        }
    }
    fn fail(code: i32, err: impl Into<String>) -> Out {
        Out {
            err: err.into(),
            code,
            ..Out::default()
        }
    }
    fn code(code: i32) -> Out {
        Out {
            code,
            ..Out::default()
        }
    }
}

const KNOWN_COMMON: &[&str] = &[
    "echo",
    "true",
    "false",
    "cat",
    "test",
    "[",
    "df",
    "command",
    "snapper",
    "systemctl",
    "fuser",
    "uname",
    "grep",
    "sleep",
    "hostname",
    "exit",
    "set",
    "export",
    ":",
];
const KNOWN_DEB: &[&str] = &["apt-get", "dpkg-query", "dpkg"];
const KNOWN_RPM: &[&str] = &["rpm", "dnf", "yum", "needs-restarting"];

impl Shell<'_> {
    fn run_pipeline(&mut self, p: &Pipeline) -> i32 {
        let mut stdin = String::new();
        let mut code = 0;
        let n = p.commands.len();
        for (k, cmd) in p.commands.iter().enumerate() {
            let o = self.run_simple(cmd, &stdin);
            code = o.code;
            // Route through the fd table.
            let mut fds = [Sink::Out, Sink::Out, Sink::Err];
            for (fd, file, dup) in &cmd.redirs {
                let sink = match (file, dup) {
                    (_, Some(t)) => fds.get(*t as usize).copied().unwrap_or(Sink::Null),
                    _ => Sink::Null,
                };
                if *fd == 255 {
                    fds[1] = sink;
                    fds[2] = sink;
                } else if let Some(slot) = fds.get_mut(*fd as usize)
                    && *fd != 0
                {
                    *slot = sink;
                }
            }
            let mut next_stdin = String::new();
            for (text, sink) in [(o.out, fds[1]), (o.err, fds[2])] {
                match sink {
                    Sink::Out if k + 1 < n => next_stdin.push_str(&text),
                    Sink::Out => self.out.push_str(&text),
                    Sink::Err => self.err.push_str(&text),
                    Sink::Null => {}
                }
            }
            stdin = next_stdin;
            if self.exit.is_some() {
                break;
            }
        }
        if p.negate { i32::from(code == 0) } else { code }
    }

    fn run_simple(&mut self, cmd: &SimpleCommand, stdin: &str) -> Out {
        // Leading NAME=value assignments are accepted and have no effect.
        let argv: Vec<&str> = cmd
            .argv
            .iter()
            .map(String::as_str)
            .skip_while(|w| is_assignment(w))
            .collect();
        let Some((&name, args)) = argv.split_first() else {
            return Out::default();
        };
        self.command(name, args, stdin)
    }

    fn available(&self, name: &str) -> bool {
        KNOWN_COMMON.contains(&name)
            || match self.sys.os.kind() {
                PkgKind::Deb => KNOWN_DEB.contains(&name),
                PkgKind::Rpm => KNOWN_RPM.contains(&name),
            }
    }

    /// Dispatch one command.
    fn command(&mut self, name: &str, args: &[&str], stdin: &str) -> Out {
        let name = name.rsplit('/').next().unwrap_or(name);
        if !self.available(name) {
            return Out::fail(127, format!("sh: 1: {name}: not found\n"));
        }
        match name {
            "true" | ":" => Out::default(),
            "false" => Out::code(1),
            "echo" => echo(args),
            "exit" => {
                let code = match args.first() {
                    None => 0,
                    Some(a) => match a.parse::<i32>() {
                        Ok(n) => n & 0xff,
                        Err(_) => {
                            self.exit = Some(2);
                            return Out::fail(2, format!("sh: 1: exit: Illegal number: {a}\n"));
                        }
                    },
                };
                self.exit = Some(code);
                Out::code(code)
            }
            "set" => {
                for a in args {
                    if a.starts_with('-') && a.contains('e') {
                        self.errexit = true;
                    } else if a.starts_with('+') && a.contains('e') {
                        self.errexit = false;
                    }
                }
                if args.windows(2).any(|w| w == ["-o", "errexit"]) {
                    self.errexit = true;
                }
                Out::default()
            }
            "export" | "sleep" => Out::default(),
            "hostname" => Out::ok(format!("{}\n", self.sys.hostname)),
            "test" => self.test(args),
            "[" => match args.split_last() {
                Some((&"]", inner)) => self.test(inner),
                _ => Out::fail(2, "sh: 1: [: missing ]\n"),
            },
            "cat" => self.cat(args, stdin),
            "grep" => grep(args, stdin),
            "df" => self.df(args),
            "command" => self.command_v(args),
            "uname" => self.uname(args),
            "snapper" => self.snapper(args),
            "systemctl" => self.systemctl(args),
            "fuser" => self.fuser(args),
            "dpkg-query" => self.dpkg_query(args),
            "dpkg" => self.dpkg(args),
            "rpm" => self.rpm(args),
            "apt-get" => self.apt_get(args),
            "dnf" | "yum" => self.dnf(name, args),
            "needs-restarting" => self.needs_restarting(args),
            _ => Out::fail(127, format!("sh: 1: {name}: not found\n")),
        }
    }

    fn file_exists(&self, path: &str) -> bool {
        match path {
            "/var/run/reboot-required" | "/run/reboot-required" => {
                self.sys.os.kind() == PkgKind::Deb && self.sys.reboot_required()
            }
            "/etc/os-release" | "/proc/sys/kernel/random/boot_id" | "/etc/machine-id" => true,
            "/var/lib/dpkg/lock-frontend" => self.sys.os.kind() == PkgKind::Deb,
            "/var/lib/rpm/.rpm.lock" => self.sys.os.kind() == PkgKind::Rpm,
            "/.snapshots" => self.sys.snapper.root_config,
            "/" | "/etc" | "/tmp" | "/var" | "/run" => true,
            _ => false,
        }
    }

    fn test(&self, args: &[&str]) -> Out {
        let (neg, args) = match args.split_first() {
            Some((&"!", rest)) => (true, rest),
            _ => (false, args),
        };
        let result = match args {
            [] => false,
            [s] => !s.is_empty(),
            ["-e" | "-f" | "-s" | "-r", p] => self.file_exists(p),
            ["-d", p] => {
                matches!(*p, "/" | "/etc" | "/tmp" | "/var" | "/run" | "/.snapshots")
                    && self.file_exists(p)
            }
            ["-x", p] => {
                let base = p.rsplit('/').next().unwrap_or(p);
                self.available(base) && p.starts_with('/')
            }
            ["-n", s] => !s.is_empty(),
            ["-z", s] => s.is_empty(),
            [a, "=", b] | [a, "==", b] => a == b,
            [a, "!=", b] => a != b,
            [a, op @ ("-eq" | "-ne" | "-lt" | "-le" | "-gt" | "-ge"), b] => {
                let (Ok(x), Ok(y)) = (a.parse::<i64>(), b.parse::<i64>()) else {
                    return Out::fail(2, format!("sh: 1: test: Illegal number: {a}\n"));
                };
                match *op {
                    "-eq" => x == y,
                    "-ne" => x != y,
                    "-lt" => x < y,
                    "-le" => x <= y,
                    "-gt" => x > y,
                    _ => x >= y,
                }
            }
            _ => return Out::fail(2, "sh: 1: test: unexpected operator\n"),
        };
        Out::code(i32::from(result == neg))
    }

    fn cat(&self, args: &[&str], stdin: &str) -> Out {
        if args.is_empty() {
            return Out::ok(stdin);
        }
        let mut o = Out::default();
        for p in args {
            match *p {
                "/proc/sys/kernel/random/boot_id" => {
                    o.out.push_str(&format!("{}\n", self.sys.boot_id))
                }
                "/etc/os-release" => o.out.push_str(self.sys.os.os_release()),
                "/etc/machine-id" => o.out.push_str(&format!("{}\n", self.sys.machine_id)),
                "/var/run/reboot-required" | "/run/reboot-required" if self.file_exists(p) => {
                    o.out.push_str("*** System restart required ***\n");
                }
                _ => {
                    o.err
                        .push_str(&format!("cat: {p}: No such file or directory\n"));
                    o.code = 1;
                }
            }
        }
        o
    }

    fn df(&self, args: &[&str]) -> Out {
        let mut avail_only = false;
        for a in args {
            match *a {
                "-BM" | "-m" | "-P" | "--block-size=M" => {}
                "--output=avail" => avail_only = true,
                "/" => {}
                p if !p.starts_with('-') => {
                    return Out::fail(1, format!("df: {p}: No such file or directory\n"));
                }
                o => return Out::fail(1, format!("df: unrecognized option '{o}'\n")),
            }
        }
        let (total, free) = (self.sys.disk_total_mb, self.sys.disk_free_mb);
        if avail_only {
            return Out::ok(format!("Avail\n{free}M\n"));
        }
        let used = total.saturating_sub(free);
        let pct = (used * 100).div_ceil(total.max(1));
        Out::ok(format!(
            "Filesystem     1M-blocks   Used Available Use% Mounted on\n/dev/sda1 {total:>14}M {used:>6}M {free:>8}M {pct:>3}% /\n"
        ))
    }

    fn command_v(&self, args: &[&str]) -> Out {
        let [flag, names @ ..] = args else {
            return Out::code(2);
        };
        if *flag != "-v" || names.is_empty() {
            return Out::fail(2, "sh: 1: command: only -v is supported\n");
        }
        let mut o = Out::default();
        for n in names {
            if self.available(n) {
                if KNOWN_COMMON.contains(n)
                    && !matches!(
                        *n,
                        "cat"
                            | "df"
                            | "snapper"
                            | "systemctl"
                            | "fuser"
                            | "uname"
                            | "grep"
                            | "sleep"
                            | "hostname"
                    )
                {
                    o.out.push_str(&format!("{n}\n"));
                } else {
                    o.out.push_str(&format!("/usr/bin/{n}\n"));
                }
            } else {
                o.code = 1;
            }
        }
        o
    }

    fn uname(&self, args: &[&str]) -> Out {
        match args {
            ["-r"] => Out::ok(format!("{}\n", self.sys.running_kernel)),
            [] | ["-s"] => Out::ok("Linux\n"),
            ["-n"] => Out::ok(format!("{}\n", self.sys.hostname)),
            ["-m"] => Out::ok("x86_64\n"),
            _ => Out::fail(1, "uname: unsupported option\n"),
        }
    }

    fn snapper(&mut self, args: &[&str]) -> Out {
        let mut rest = args;
        let mut config = "root".to_string();
        while let Some((&a, r)) = rest.split_first() {
            match a {
                "-c" | "--config" => {
                    let Some((&c, r2)) = r.split_first() else {
                        return Out::fail(1, "Missing argument for -c.\n");
                    };
                    config = c.to_string();
                    rest = r2;
                }
                "-q" | "--quiet" | "--no-dbus" | "--iso" => rest = r,
                _ => break,
            }
        }
        let Some((&sub, opts)) = rest.split_first() else {
            return Out::fail(1, "Command missing.\n");
        };
        if sub == "list-configs" {
            let mut s = String::from("Config | Subvolume\n-------+----------\n");
            if self.sys.snapper.root_config {
                s.push_str("root   | /\n");
            }
            return Out::ok(s);
        }
        if sub == "create-config" {
            if config != "root" || opts.last() != Some(&"/") {
                return Out::fail(1, "Creating config failed (only root on / is simulated).\n");
            }
            if self.sys.snapper.root_config {
                return Out::fail(
                    1,
                    "Creating config failed (config 'root' already exists).\n",
                );
            }
            self.sys.snapper.root_config = true;
            return Out::default();
        }
        if config != "root" || !self.sys.snapper.root_config {
            return Out::fail(
                1,
                format!(
                    "The config '{config}' does not exist. Likely snapper is not configured.\nSee 'man snapper' for further instructions.\n"
                ),
            );
        }
        match sub {
            "create" => {
                let mut print = false;
                let mut kind = "single".to_string();
                let mut description = String::new();
                let mut cleanup = String::new();
                let mut it = opts.iter();
                while let Some(&o) = it.next() {
                    let mut val = |flag: &str| {
                        it.next()
                            .map(|v| v.to_string())
                            .ok_or_else(|| Out::fail(1, format!("Missing argument for {flag}.\n")))
                    };
                    let r = match o {
                        "-p" | "--print-number" => {
                            print = true;
                            Ok(())
                        }
                        "-t" | "--type" => val(o).map(|v| kind = v),
                        "-d" | "--description" => val(o).map(|v| description = v),
                        "-c" | "--cleanup-algorithm" => val(o).map(|v| cleanup = v),
                        "--pre-number" | "-u" | "--userdata" => val(o).map(|_| ()),
                        other => Err(Out::fail(
                            1,
                            format!("Unknown option '{other}' for command 'create'.\n"),
                        )),
                    };
                    if let Err(e) = r {
                        return e;
                    }
                }
                if !matches!(kind.as_str(), "single" | "pre" | "post") {
                    return Out::fail(1, format!("Unknown type of snapshot.\n{kind}\n"));
                }
                let snap = &mut self.sys.snapper;
                snap.last_number += 1;
                let number = snap.last_number;
                snap.snapshots.push(Snapshot {
                    number,
                    kind,
                    date: self.now,
                    description,
                    cleanup,
                    packages: self.sys.installed.clone(),
                });
                if print {
                    Out::ok(format!("{number}\n"))
                } else {
                    Out::default()
                }
            }
            "list" | "ls" => {
                let mut s = String::from(
                    " # | Type   | Pre # | Date                     | User | Cleanup | Description | Userdata\n---+--------+-------+--------------------------+------+---------+-------------+---------\n0  | single |       |                          | root |         | current     |\n",
                );
                for sn in &self.sys.snapper.snapshots {
                    s.push_str(&format!(
                        "{:<3}| {:<7}|       | {} | root | {:<8}| {} |\n",
                        sn.number,
                        sn.kind,
                        sn.date.format("%a %d %b %Y %H:%M:%S"),
                        sn.cleanup,
                        sn.description
                    ));
                }
                Out::ok(s)
            }
            "undochange" => {
                let [range] = opts else {
                    return Out::fail(1, "Command 'undochange' needs one argument.\n");
                };
                let Some((a, b)) = range.split_once("..") else {
                    return Out::fail(1, "Invalid snapshots.\n");
                };
                let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) else {
                    return Out::fail(1, "Invalid snapshots.\n");
                };
                if b != 0 {
                    return Out::fail(1, "Only undochange N..0 is simulated.\n");
                }
                let Some(sn) = self.sys.snapper.snapshots.iter().find(|s| s.number == a) else {
                    return Out::fail(1, format!("Snapshot '{a}' not found.\n"));
                };
                let target = sn.packages.clone();
                let (mut create, mut modify, mut delete) = (0, 0, 0);
                for (name, p) in &target {
                    match self.sys.installed.get(name) {
                        None => create += 1,
                        Some(cur) if cur != p => modify += 1,
                        _ => {}
                    }
                }
                for name in self.sys.installed.keys() {
                    if !target.contains_key(name) {
                        delete += 1;
                    }
                }
                if create + modify + delete > 0 {
                    self.changed = true;
                }
                self.sys.installed = target;
                Out::ok(format!("create:{create} modify:{modify} delete:{delete}\n"))
            }
            "delete" | "rm" => {
                if opts.is_empty() {
                    return Out::fail(1, "Command 'delete' needs at least one argument.\n");
                }
                for o in opts {
                    let (lo, hi) = match o.split_once('-') {
                        Some((a, b)) => (a.parse::<u32>(), b.parse::<u32>()),
                        None => (o.parse::<u32>(), o.parse::<u32>()),
                    };
                    let (Ok(lo), Ok(hi)) = (lo, hi) else {
                        return Out::fail(1, format!("Invalid snapshot '{o}'.\n"));
                    };
                    let snaps = &mut self.sys.snapper.snapshots;
                    if lo == 0 || !snaps.iter().any(|s| s.number >= lo && s.number <= hi) {
                        return Out::fail(1, format!("Snapshot '{lo}' not found.\n"));
                    }
                    snaps.retain(|s| s.number < lo || s.number > hi);
                }
                Out::default()
            }
            other => Out::fail(1, format!("Unknown command '{other}'.\n")),
        }
    }

    fn systemctl(&mut self, args: &[&str]) -> Out {
        let quiet = args.iter().any(|a| *a == "--quiet" || *a == "-q");
        let now_flag = args.contains(&"--now");
        let words: Vec<&str> = args
            .iter()
            .copied()
            .filter(|a| !a.starts_with('-'))
            .collect();
        let Some((&verb, units)) = words.split_first() else {
            return Out::fail(1, "systemctl: simulated only with a verb\n");
        };
        let key = |u: &str| {
            if u.contains('.') {
                u.to_string()
            } else {
                format!("{u}.service")
            }
        };
        match verb {
            "is-active" => {
                if units.is_empty() {
                    return Out::fail(1, "Too few arguments.\n");
                }
                let mut o = Out::default();
                for u in units {
                    let st = self
                        .sys
                        .units
                        .get(&key(u))
                        .copied()
                        .unwrap_or(UnitState::Inactive);
                    if !quiet {
                        o.out.push_str(st.as_str());
                        o.out.push('\n');
                    }
                    if st != UnitState::Active {
                        o.code = 3;
                    }
                }
                o
            }
            "restart" | "start" | "enable" | "stop" | "reload" => {
                if units.is_empty() {
                    return Out::fail(1, "Too few arguments.\n");
                }
                for u in units {
                    let k = key(u);
                    let Some(st) = self.sys.units.get_mut(&k) else {
                        let v = if verb == "enable" { "enable" } else { verb };
                        return Out::fail(5, format!("Failed to {v} {k}: Unit {k} not found.\n"));
                    };
                    match verb {
                        "stop" => *st = UnitState::Inactive,
                        "enable" if !now_flag => {}
                        _ => *st = UnitState::Active,
                    }
                }
                Out::default()
            }
            other => Out::fail(1, format!("systemctl: verb '{other}' is not simulated\n")),
        }
    }

    fn fuser(&self, args: &[&str]) -> Out {
        let files: Vec<&str> = args
            .iter()
            .copied()
            .filter(|a| !a.starts_with('-'))
            .collect();
        if files.is_empty() {
            return Out::fail(1, "No process specification given\n");
        }
        let mut o = Out::code(1);
        for f in files {
            let lock = matches!(
                f,
                "/var/lib/dpkg/lock-frontend" | "/var/lib/dpkg/lock" | "/var/lib/rpm/.rpm.lock"
            );
            if lock && self.sys.pkg_lock_held && self.file_exists(f) {
                o.out.push_str(" 4242");
                o.err.push_str(&format!("{f}:\n"));
                o.code = 0;
            }
        }
        o
    }

    /// `dpkg --verify NAME…`: a simulated system's files always match their packages, so
    /// it prints nothing for installed packages (as real dpkg does when all is well) and
    /// dpkg's error for names that are not installed.
    fn dpkg(&self, args: &[&str]) -> Out {
        let (Some(&verb), names) = (args.first(), args.get(1..).unwrap_or_default()) else {
            return Out::fail(2, "dpkg: error: need an action option\n");
        };
        if verb != "--verify" && verb != "-V" {
            return Out::fail(2, format!("dpkg: error: {verb} is not simulated\n"));
        }
        let mut o = Out::default();
        for n in names {
            if !self.sys.installed.contains_key(*n) {
                o.err
                    .push_str(&format!("dpkg: error: package '{n}' is not installed\n"));
                o.code = 1;
            }
        }
        o
    }

    fn dpkg_query(&self, args: &[&str]) -> Out {
        let mut fmt = "${Package}\t${Version}\n".to_string();
        let mut names = Vec::new();
        let mut show = false;
        let mut it = args.iter();
        while let Some(&a) = it.next() {
            if a == "-W" || a == "--show" {
                show = true;
            } else if a == "-f" || a == "--showformat" {
                match it.next() {
                    Some(f) => fmt = f.to_string(),
                    None => return Out::fail(2, "dpkg-query: error: --showformat needs a value\n"),
                }
            } else if let Some(f) = a
                .strip_prefix("--showformat=")
                .or_else(|| a.strip_prefix("-f="))
            {
                fmt = f.to_string();
            } else if a.starts_with('-') {
                return Out::fail(2, format!("dpkg-query: error: unknown option {a}\n"));
            } else {
                names.push(a);
            }
        }
        if !show {
            return Out::fail(2, "dpkg-query: error: only -W is simulated\n");
        }
        let mut o = Out::default();
        let list: Vec<&Installed> = if names.is_empty() {
            self.sys.installed.values().collect()
        } else {
            let mut v = Vec::new();
            for n in names {
                match self.sys.installed.get(n) {
                    Some(p) => v.push(p),
                    None => {
                        o.err
                            .push_str(&format!("dpkg-query: no packages found matching {n}\n"));
                        o.code = 1;
                    }
                }
            }
            v
        };
        for p in list {
            let arch = p.arch.trim_end_matches("-deb");
            o.out.push_str(&unescape(
                &fmt.replace("${Package}", &p.name)
                    .replace("${Version}", &p.evr.to_string())
                    .replace("${Architecture}", arch)
                    .replace("${Status}", "install ok installed")
                    .replace("${db:Status-Abbrev}", "ii "),
            ));
        }
        o
    }

    /// `rpm -V NAME…`: nothing to report for installed packages, rpm's message otherwise.
    fn rpm_verify(&self, names: &[&str]) -> Out {
        let mut o = Out::default();
        for n in names {
            if !self.sys.installed.contains_key(*n) {
                o.out.push_str(&format!("package {n} is not installed\n"));
                o.code = 1;
            }
        }
        o
    }

    fn rpm(&self, args: &[&str]) -> Out {
        let mut fmt = "%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}\n".to_string();
        let mut query = false;
        let mut names = Vec::new();
        let mut it = args.iter();
        while let Some(&a) = it.next() {
            match a {
                "-q" | "--query" => query = true,
                "-qa" => return Out::fail(1, "rpm: -qa is not simulated\n"),
                "-V" | "--verify" => return self.rpm_verify(it.as_slice()),
                "--qf" | "--queryformat" => match it.next() {
                    Some(f) => fmt = f.to_string(),
                    None => return Out::fail(1, "rpm: --qf needs an argument\n"),
                },
                o if o.starts_with('-') => {
                    return Out::fail(1, format!("rpm: {o}: unknown option\n"));
                }
                n => names.push(n),
            }
        }
        if !query || names.is_empty() {
            return Out::fail(1, "rpm: no arguments given for query\n");
        }
        let mut o = Out::default();
        for n in names {
            match self.sys.installed.get(n) {
                Some(p) => {
                    let epoch = p.evr.epoch.map_or("(none)".to_string(), |e| e.to_string());
                    o.out.push_str(&unescape(
                        &fmt.replace("%{EPOCH}", &epoch)
                            .replace("%{NAME}", &p.name)
                            .replace("%{VERSION}", &p.evr.version)
                            .replace("%{RELEASE}", &p.evr.release)
                            .replace("%{ARCH}", &p.arch),
                    ));
                }
                None => {
                    o.out.push_str(&format!("package {n} is not installed\n"));
                    o.code = 1;
                }
            }
        }
        o
    }

    fn install(&mut self, pkg_name: &str, evr: &Evr, arch: &str) {
        self.sys.installed.insert(
            pkg_name.to_string(),
            Installed {
                name: pkg_name.to_string(),
                evr: evr.clone(),
                arch: arch.to_string(),
                installtime: self.now,
            },
        );
        self.sys.disk_free_mb = self.sys.disk_free_mb.saturating_sub(2);
        self.changed = true;
    }

    fn apt_get(&mut self, args: &[&str]) -> Out {
        let mut allow_down = false;
        let mut words = Vec::new();
        for a in args {
            match *a {
                "--allow-downgrades" => allow_down = true,
                "-y" | "--yes" | "-q" | "-qq" | "--assume-yes" | "--no-install-recommends" => {}
                o if o.starts_with('-') => {
                    return Out::fail(
                        100,
                        format!("E: Command line option '{o}' is not understood (simulator)\n"),
                    );
                }
                w => words.push(w),
            }
        }
        let Some((&verb, items)) = words.split_first() else {
            return Out::fail(100, "E: No command given (simulator)\n");
        };
        if verb == "update" {
            return Out::ok("Reading package lists...\n");
        }
        if verb != "install" {
            return Out::fail(100, format!("E: Invalid operation {verb}\n"));
        }
        let channels = self.sys.channels.clone();
        let mut plan = Vec::new();
        let mut downgrades = Vec::new();
        let mut header = String::from(
            "Reading package lists...\nBuilding dependency tree...\nReading state information...\n",
        );
        for item in items {
            let (name, ver) = match item.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (*item, None),
            };
            if !self.catalog.knows_name(&channels, name) {
                return Out {
                    out: header,
                    err: format!("E: Unable to locate package {name}\n"),
                    code: 100,
                };
            }
            let pkg = match ver {
                None => self.catalog.latest(&channels, name),
                Some(v) => Evr::parse(PkgKind::Deb, v)
                    .ok()
                    .and_then(|evr| self.catalog.find_exact(&channels, name, &evr, false)),
            };
            let Some(pkg) = pkg else {
                let v = ver.unwrap_or_default();
                return Out {
                    out: header,
                    err: format!("E: Version '{v}' for '{name}' was not found\n"),
                    code: 100,
                };
            };
            if let Some(cur) = self.sys.installed.get(name)
                && pkg.evr.cmp_with(&cur.evr, PkgKind::Deb).is_lt()
            {
                downgrades.push(name.to_string());
            }
            plan.push(pkg);
        }
        if !downgrades.is_empty() {
            header.push_str(&format!(
                "The following packages will be DOWNGRADED:\n  {}\n",
                downgrades.join(" ")
            ));
            if !allow_down {
                return Out {
                    out: header,
                    err:
                        "E: Packages were downgraded and -y was used without --allow-downgrades.\n"
                            .into(),
                    code: 100,
                };
            }
        }
        if self.sys.pkg_lock_held {
            return Out::fail(
                100,
                "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 4242 (apt-get)\n",
            );
        }
        for p in plan {
            header.push_str(&format!("Setting up {} ({}) ...\n", p.name, p.evr));
            let (n, e, a) = (p.name.clone(), p.evr.clone(), p.arch.clone());
            self.install(&n, &e, &a);
        }
        Out::ok(header)
    }

    fn dnf(&mut self, tool: &str, args: &[&str]) -> Out {
        let mut words = Vec::new();
        for a in args {
            match *a {
                "-y" | "--assumeyes" | "-q" | "--quiet" | "--allowerasing" => {}
                o if o.starts_with('-') => {
                    return Out::fail(1, format!("{tool}: unsupported option {o} (simulator)\n"));
                }
                w => words.push(w),
            }
        }
        let Some((&verb, items)) = words.split_first() else {
            return Out::fail(1, format!("{tool}: no command given\n"));
        };
        if !matches!(verb, "install" | "downgrade" | "upgrade" | "update") {
            return Out::fail(1, format!("No such command: {verb}.\n"));
        }
        if items.is_empty() {
            return Out::fail(1, "Error: Need to pass a list of pkgs\n");
        }
        let channels = self.sys.channels.clone();
        let mut plan = Vec::new();
        for item in items {
            let Some(pkg) = self.resolve_rpm_spec(&channels, item) else {
                return Out {
                    out: format!("No match for argument: {item}\n"),
                    err: format!("Error: Unable to find a match: {item}\n"),
                    code: 1,
                };
            };
            if verb == "downgrade" {
                let older = self
                    .sys
                    .installed
                    .get(&pkg.name)
                    .is_some_and(|cur| pkg.evr.cmp_with(&cur.evr, PkgKind::Rpm).is_lt());
                if !older {
                    return Out::fail(
                        1,
                        format!(
                            "Package {item} of lowest version already installed, cannot downgrade it.\nError: No packages marked for downgrade.\n"
                        ),
                    );
                }
            }
            plan.push(pkg);
        }
        if self.sys.pkg_lock_held {
            return Out::fail(1, "Error: rpmdb open failed (lock held by process 4242)\n");
        }
        let mut out = String::from("Dependencies resolved.\n");
        for p in plan {
            out.push_str(&format!(
                "  Installing       : {}-{}-{}.{}\n",
                p.name, p.evr.version, p.evr.release, p.arch
            ));
            let (n, e, a) = (p.name.clone(), p.evr.clone(), p.arch.clone());
            self.install(&n, &e, &a);
        }
        out.push_str("\nComplete!\n");
        Out::ok(out)
    }

    /// Resolve `NAME`, `NAME-[EPOCH:]VERSION-RELEASE` or the same with `.ARCH`.
    fn resolve_rpm_spec(&self, channels: &[u32], spec: &str) -> Option<super::model::Package> {
        if self.catalog.knows_name(channels, spec) {
            return self.catalog.latest(channels, spec).cloned();
        }
        let spec = [".x86_64", ".noarch", ".i686", ".aarch64"]
            .iter()
            .find_map(|a| spec.strip_suffix(a))
            .unwrap_or(spec);
        let (rest, release) = spec.rsplit_once('-')?;
        let (name, version) = rest.rsplit_once('-')?;
        let evr = Evr::parse(PkgKind::Rpm, &format!("{version}-{release}")).ok()?;
        // Without an epoch in the spec, any epoch matches; with one, it must be equal.
        self.catalog.find_exact(channels, name, &evr, true).cloned()
    }

    fn needs_restarting(&self, args: &[&str]) -> Out {
        if args != ["-r"] {
            return Out::fail(1, "needs-restarting: only -r is simulated\n");
        }
        if self.sys.reboot_required() {
            Out {
                out: "Core libraries or services have been updated since boot-up:\n  * kernel\n\nReboot is required to fully utilize these updates.\nMore information: https://access.redhat.com/solutions/27943\n".into(),
                err: String::new(),
                code: 1,
            }
        } else {
            Out::ok(
                "No core libraries or services have been updated since boot-up.\nReboot should not be necessary.\n",
            )
        }
    }
}

fn is_assignment(w: &str) -> bool {
    w.split_once('=').is_some_and(|(n, _)| {
        !n.is_empty()
            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !n.starts_with(|c: char| c.is_ascii_digit())
    })
}

fn unescape(s: &str) -> String {
    s.replace("\\n", "\n").replace("\\t", "\t")
}

fn echo(args: &[&str]) -> Out {
    let (newline, args) = match args.first() {
        Some(&"-n") => (false, &args[1..]),
        _ => (true, args),
    };
    let mut s = args.join(" ");
    if newline {
        s.push('\n');
    }
    Out::ok(s)
}

fn grep(args: &[&str], stdin: &str) -> Out {
    let quiet = args.contains(&"-q");
    let pats: Vec<&str> = args
        .iter()
        .copied()
        .filter(|a| !a.starts_with('-'))
        .collect();
    let [pat] = pats.as_slice() else {
        return Out::fail(2, "grep: only 'grep [-q] PATTERN' on stdin is simulated\n");
    };
    let hits: Vec<&str> = stdin.lines().filter(|l| l.contains(pat)).collect();
    let code = i32::from(hits.is_empty());
    if quiet {
        return Out::code(code);
    }
    let mut out = hits.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    Out {
        out,
        err: String::new(),
        code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(src: &str) -> Vec<Token> {
        tokenize(src).unwrap()
    }
    fn w(s: &str) -> Token {
        Token::Word(s.into())
    }

    #[test]
    fn quotes_make_one_argument() {
        assert_eq!(
            words("echo 'a;b' \"c && d\""),
            vec![w("echo"), w("a;b"), w("c && d")]
        );
        assert_eq!(words("echo a\\;b"), vec![w("echo"), w("a;b")]);
        assert_eq!(words("echo 'it'\\''s'"), vec![w("echo"), w("it's")]);
        assert_eq!(
            words("echo \"x\\\"y\" '$HOME'"),
            vec![w("echo"), w("x\"y"), w("$HOME")]
        );
        assert_eq!(words("echo ''"), vec![w("echo"), w("")]);
    }

    #[test]
    fn operators_comments_and_redirections() {
        assert_eq!(
            words("#!/bin/bash\na && b || c; d | e # trailing\n"),
            vec![
                Token::Sep,
                w("a"),
                Token::And,
                w("b"),
                Token::Or,
                w("c"),
                Token::Sep,
                w("d"),
                Token::Pipe,
                w("e"),
                Token::Sep
            ]
        );
        assert_eq!(
            words("cmd >/dev/null 2>&1"),
            vec![
                w("cmd"),
                Token::Redir(1),
                w("/dev/null"),
                Token::Dup(2),
                w("1")
            ]
        );
        assert_eq!(words("echo a#b"), vec![w("echo"), w("a#b")]);
        assert!(tokenize("echo 'open").is_err());
        assert!(tokenize("echo \"open").is_err());
    }

    #[test]
    fn parse_errors_are_reported() {
        assert!(parse(&words("&& echo")).is_err());
        assert!(parse(&words("echo a &&")).is_err());
        assert!(parse(&words("echo a | ; b")).is_err());
        let lists = parse(&words("a && b\nc")).unwrap();
        assert_eq!(lists.len(), 2);
        assert_eq!(lists[0].rest.len(), 1);
    }

    #[test]
    fn assignment_detection() {
        assert!(is_assignment("DEBIAN_FRONTEND=noninteractive"));
        assert!(!is_assignment("pkg=1.0"[3..].trim()));
        assert!(!is_assignment("=x"));
        assert!(!is_assignment("1A=x"));
    }
}
