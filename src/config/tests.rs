use super::*;

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn load(
    file: Option<PathBuf>,
    env: &[(&str, &str)],
    set: &[(&str, &str)],
) -> Result<Config, ConfigError> {
    Config::load(&LoadOptions {
        file,
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        overrides: set
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    })
}

#[test]
fn default_file_parses_back_to_defaults() {
    let parsed: Config = toml::from_str(DEFAULT_TOML).unwrap();
    assert_eq!(parsed, Config::default());
}

#[test]
fn default_file_mentions_every_key() {
    // Every key of the serialized defaults appears in the template, so the commented file
    // cannot silently fall behind the structs.
    let value = toml::Value::try_from(Config::default()).unwrap();
    fn walk(prefix: &str, v: &toml::Value, out: &mut Vec<String>) {
        if let toml::Value::Table(t) = v {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match v {
                    toml::Value::Table(_) => walk(&key, v, out),
                    _ => out.push(key),
                }
            }
        }
    }
    let mut keys = Vec::new();
    walk("", &value, &mut keys);
    assert!(keys.len() > 60, "{}", keys.len());
    for key in keys {
        if key == "notify.webhooks" {
            assert!(DEFAULT_TOML.contains("# [[notify.webhooks]]"));
            continue;
        }
        assert!(
            find_key_line(DEFAULT_TOML, &key).is_some(),
            "{key} missing from default.toml"
        );
    }
    for optional in [
        "uyuni.url",
        "uyuni.password_file",
        "notify.smtp.host",
        "prometheus.url",
    ] {
        let leaf = optional.rsplit('.').next().unwrap();
        assert!(DEFAULT_TOML.contains(&format!("# {leaf} = ")), "{optional}");
    }
}

#[test]
fn unknown_key_names_key_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        &dir,
        "spm.toml",
        "[database]\npath = \"x.db\"\n\n[uyuni]\nurl = \"https://u\"\npasword = \"oops\"\n",
    );
    let err = load(Some(p.clone()), &[], &[]).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ConfigError::Parse { line: 6, .. }), "{msg}");
    assert!(msg.contains("uyuni.pasword"), "{msg}");
    assert!(msg.contains(&p.display().to_string()), "{msg}");
    assert!(msg.contains("line 6"), "{msg}");
}

#[test]
fn wrong_type_names_key_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        &dir,
        "c.toml",
        "[sync]\nconcurrency = 4\n[test]\nlease_secs = \"five\"\n",
    );
    let msg = load(Some(p), &[], &[]).unwrap_err().to_string();
    assert!(
        msg.contains("line 4") && msg.contains("test.lease_secs"),
        "{msg}"
    );
    let p = write(&dir, "d.toml", "[server]\nlisten = \"not an address\"\n");
    let msg = load(Some(p), &[], &[]).unwrap_err().to_string();
    assert!(
        msg.contains("line 2") && msg.contains("server.listen"),
        "{msg}"
    );
    let p = write(&dir, "e.toml", "[bogus]\nx = 1\n");
    let msg = load(Some(p), &[], &[]).unwrap_err().to_string();
    assert!(msg.contains("line 1") && msg.contains("bogus"), "{msg}");
    let p = write(&dir, "f.toml", "[sync\n");
    let msg = load(Some(p), &[], &[]).unwrap_err().to_string();
    assert!(msg.contains("line 1"), "{msg}");
}

#[test]
fn invalid_value_names_its_origin() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(&dir, "c.toml", "[notify]\n\ndigest_time = \"25:99\"\n");
    let msg = load(Some(p.clone()), &[], &[]).unwrap_err().to_string();
    assert!(
        msg.contains("notify.digest_time") && msg.contains("line 3"),
        "{msg}"
    );
    let msg = load(None, &[("SPM_SCORE__KERNEL_PATTERNS", "[\"(\"]")], &[])
        .unwrap_err()
        .to_string();
    assert!(msg.contains("SPM_SCORE__KERNEL_PATTERNS"), "{msg}");
    let msg = load(None, &[], &[("uyuni.url", "ftp://x")])
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("--set uyuni.url") && msg.contains("http or https"),
        "{msg}"
    );
    let msg = load(None, &[], &[("uyuni.url", "https://admin:hunter2@uyuni")])
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("contains a password") && !msg.contains("hunter2"),
        "{msg}"
    );
}

#[test]
fn env_overrides_file_and_cli_overrides_env() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        &dir,
        "c.toml",
        "[uyuni]\nurl = \"https://file\"\ntimeout_secs = 5\n[server]\nlisten = \"127.0.0.1:7000\"\n",
    );
    let c = load(Some(p.clone()), &[], &[]).unwrap();
    assert_eq!(c.uyuni.url.as_deref(), Some("https://file"));
    assert_eq!(c.uyuni.timeout_secs, 5);
    assert_eq!(c.file.as_deref(), Some(p.as_path()));
    let env = [
        ("SPM_UYUNI__URL", "https://env"),
        ("SPM_UYUNI__TIMEOUT_SECS", "9"),
        ("SPM_TEST__CRITICAL_SERVICES__UBUNTU", "[\"ssh\"]"),
        ("SPM_NOTIFY__SMTP__HOST", "relay"),
        ("SPM_LOG", "debug"),
        ("HOME", "/root"),
    ];
    let c = load(Some(p.clone()), &env, &[]).unwrap();
    assert_eq!(c.uyuni.url.as_deref(), Some("https://env"));
    assert_eq!(c.uyuni.timeout_secs, 9);
    assert_eq!(
        c.server.listen.port(),
        7000,
        "file value kept when env does not set it"
    );
    assert_eq!(c.test.critical_services["ubuntu"], vec!["ssh".to_string()]);
    assert_eq!(c.notify.smtp.host.as_deref(), Some("relay"));
    let c = load(
        Some(p),
        &env,
        &[("uyuni.url", "https://cli"), ("database.path", "/tmp/x.db")],
    )
    .unwrap();
    assert_eq!(c.uyuni.url.as_deref(), Some("https://cli"));
    assert_eq!(c.uyuni.timeout_secs, 9);
    assert_eq!(c.database.path, PathBuf::from("/tmp/x.db"));
}

#[test]
fn env_errors_name_the_variable() {
    let err = load(None, &[("SPM_UYUNI__TIMEOUT_SECS", "soon")], &[]).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("SPM_UYUNI__TIMEOUT_SECS") && msg.contains("uyuni.timeout_secs"),
        "{msg}"
    );
    let msg = load(None, &[("SPM_UYUNI__NOPE", "1")], &[])
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("SPM_UYUNI__NOPE") && msg.contains("nope"),
        "{msg}"
    );
    let msg = load(None, &[], &[("sync.scope", "everything")])
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("sync.scope") && msg.contains("everything"),
        "{msg}"
    );
}

#[test]
fn numeric_looking_secret_stays_a_string() {
    let c = load(None, &[("SPM_UYUNI__PASSWORD", "123456")], &[]).unwrap();
    assert_eq!(
        c.uyuni.password.as_ref().map(Secret::expose),
        Some("123456")
    );
}

#[test]
fn secrets_are_redacted_and_loadable_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let pw = write(&dir, "pw", "s3cret-uyuni\n");
    let hmac = write(&dir, "hmac", "hmac-key");
    let p = write(
        &dir,
        "c.toml",
        &format!(
            "[uyuni]\npassword_file = {:?}\n[notify.smtp]\npassword = \"smtp-pass\"\n\
             [[notify.webhooks]]\nname = \"chat\"\nurl = \"https://h.example/x\"\n\
             auth_header = \"Bearer tok-123\"\nhmac_secret_file = {:?}\n",
            pw.display().to_string(),
            hmac.display().to_string()
        ),
    );
    let c = load(Some(p), &[], &[]).unwrap();
    assert_eq!(c.uyuni.password.as_ref().unwrap().expose(), "s3cret-uyuni");
    assert_eq!(
        c.notify.webhooks[0].hmac_secret.as_ref().unwrap().expose(),
        "hmac-key"
    );
    let debug = format!("{c:?}");
    let shown = c.to_redacted_toml();
    for secret in ["s3cret-uyuni", "smtp-pass", "tok-123", "hmac-key"] {
        assert!(!debug.contains(secret), "Debug leaks {secret}");
        assert!(!shown.contains(secret), "config show leaks {secret}");
    }
    assert!(shown.contains("***"));
    // Both a secret and its file: refused.
    let p = write(
        &dir,
        "both.toml",
        &format!(
            "[uyuni]\npassword = \"x\"\npassword_file = {:?}\n",
            pw.display().to_string()
        ),
    );
    let msg = load(Some(p), &[], &[]).unwrap_err().to_string();
    assert!(
        msg.contains("uyuni.password") && msg.contains("not both"),
        "{msg}"
    );
    // Missing secret file: named.
    let msg = load(
        None,
        &[("SPM_UYUNI__PASSWORD_FILE", "/nonexistent/pw")],
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        msg.contains("/nonexistent/pw") && msg.contains("uyuni.password_file"),
        "{msg}"
    );
}

#[test]
fn missing_explicit_file_is_an_error() {
    let msg = load(Some(PathBuf::from("/nonexistent/spm.toml")), &[], &[])
        .unwrap_err()
        .to_string();
    assert!(msg.contains("/nonexistent/spm.toml"), "{msg}");
}

#[test]
fn warnings_for_insecure_settings() {
    let c = load(None, &[("SPM_UYUNI__INSECURE_SKIP_VERIFY", "true")], &[]).unwrap();
    assert_eq!(c.warnings().len(), 1);
    assert!(Config::default().warnings().is_empty());
}

#[test]
fn ansible_settings_are_checked_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let ok = write(
        &dir,
        "ok.toml",
        "[ansible]\nconnection = \"local\"\nforks = 5\n\n[ansible.host_vars]\nansible_user = \"spm\"\nansible_ssh_private_key_file = \"/etc/spm/id\"\n\n[ansible.hosts.\"web-01\"]\naddress = \"10.0.0.5\"\nvars = { ansible_port = 2222 }\n",
    );
    let c = load(Some(ok), &[], &[]).unwrap();
    assert_eq!(
        c.ansible.hosts["web-01"].address.as_deref(),
        Some("10.0.0.5")
    );
    assert_eq!(
        c.ansible.playbook_dir(std::path::Path::new("scripts")),
        std::path::PathBuf::from("scripts/ansible")
    );
    for (body, key, words) in [
        (
            "[ansible.host_vars]\nansible_password = \"x\"\n",
            "ansible.host_vars",
            "looks like a secret",
        ),
        (
            "[ansible.hosts.\"w\"]\nvars = { spm_packages = [\"x\"] }\n",
            "ansible.hosts.w.vars",
            "set by spm",
        ),
        (
            "[ansible.hosts.\"w\"]\nvars = { ansible_host = \"x\" }\n",
            "ansible.hosts.w.vars",
            "address",
        ),
        (
            "[ansible.hosts.\"w\"]\naddress = \"x;reboot\"\n",
            "ansible.hosts.w.address",
            "not a hostname",
        ),
        (
            "[ansible]\nconnection = \"ssh -o x\"\n",
            "ansible.connection",
            "plugin",
        ),
        (
            "[ansible]\nforks = 0\n",
            "ansible.forks",
            "between 1 and 1000",
        ),
    ] {
        let p = write(&dir, "bad.toml", body);
        let msg = load(Some(p), &[], &[]).unwrap_err().to_string();
        assert!(msg.contains(key) && msg.contains(words), "{body}: {msg}");
    }
    // The environment reaches the section too.
    let c = load(None, &[("SPM_ANSIBLE__CONNECTION", "local")], &[]).unwrap();
    assert_eq!(c.ansible.connection.as_deref(), Some("local"));
}
