//! The install kit: `systemd-analyze` accepts the unit and rates its hardening, `shellcheck`
//! accepts the scripts, and `install.sh --root` lays out every file with its owner and mode,
//! idempotently (a second run upgrades the binary and keeps the settings); `uninstall.sh` keeps
//! or purges data as asked; nginx and Caddy accept the reverse-proxy examples. The tools are
//! installed here if the machine lacks them.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Makes `command` available, installing `package` with apt-get once if it is missing (a fresh
/// CI machine has neither shellcheck nor, in slim images, systemd). `probe` is the argument that
/// makes the command print its version and succeed.
pub fn tool(command: &str, probe: &str, package: &str) {
    static APT: Mutex<()> = Mutex::new(());
    let _serial = APT.lock().unwrap();
    let present = || Command::new(command).arg(probe).output().is_ok_and(|o| o.status.success());
    if present() {
        return;
    }
    // Another suite on the machine may hold dpkg's lock for a while; wait for it.
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(["-o", "DPkg::Lock::Timeout=300", "-q"])
            .args(args)
            .status()
            .is_ok_and(|s| s.success())
    };
    let install = || apt(&["install", "-y", package]);
    if !install() {
        let updated = apt(&["update"]);
        assert!(updated && install(), "cannot install {package} with apt-get");
    }
    assert!(present(), "{command} still missing after installing {package}");
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(out.status.success(), "{cmd:?} failed: {}{}", text(&out.stdout), text(&out.stderr));
    out
}

#[test]
fn systemd_accepts_the_unit_and_rates_it_well_hardened() {
    tool("systemd-analyze", "--version", "systemd");
    let unit = std::fs::read_to_string(repo().join("deploy/concord.service")).unwrap();
    for setting in [
        "NoNewPrivileges=true",
        "ProtectSystem=strict",
        "ProtectHome=true",
        "PrivateTmp=true",
        "ProtectKernelTunables=true",
        "ProtectKernelModules=true",
        "ProtectControlGroups=true",
        "LockPersonality=true",
        "RestrictAddressFamilies=",
        "ReadWritePaths=/var/lib/concord",
        "StateDirectory=concord",
    ] {
        assert!(unit.lines().any(|l| l.starts_with(setting)), "the unit sets {setting}");
    }
    // verify checks that ExecStart exists, so point it at the binary under test. It reports
    // unknown keys and bad values only as warnings, so its output must be empty, too.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("concord.service");
    std::fs::write(&copy, unit.replace("/usr/local/bin/concord", env!("CARGO_BIN_EXE_concord"))).unwrap();
    let verified = run(Command::new("systemd-analyze").arg("verify").arg(&copy));
    let said = String::from_utf8_lossy(&verified.stderr).into_owned() + &String::from_utf8_lossy(&verified.stdout);
    assert!(said.trim().is_empty(), "systemd-analyze verify complained: {said}");
    // Exposure 1.1 of 10 today ("OK"); what remains open is the network the service exists to
    // use (IP sockets, no IP allow list, AF_UNIX for name resolution) and the host root. The
    // bound 1.5 fails the test if a setting is dropped.
    let rated = run(Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=15"])
        .arg(&copy)
        .current_dir(dir.path()));
    assert!(String::from_utf8_lossy(&rated.stdout).contains("Overall exposure level for concord.service: 1."));
}

#[test]
fn shellcheck_accepts_the_scripts() {
    tool("shellcheck", "--version", "shellcheck");
    run(Command::new("shellcheck")
        .arg("--severity=style")
        .arg(repo().join("scripts/install.sh"))
        .arg(repo().join("scripts/uninstall.sh")));
}

/// (mode, uid, gid) of `path`, not following a final symlink.
fn owner_mode(path: &Path) -> (u32, u32, u32) {
    let m = std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (m.mode() & 0o7777, m.uid(), m.gid())
}

/// The uid and gid `concord` got in the scratch root's own /etc/passwd.
fn concord_ids(root: &Path) -> (u32, u32) {
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    let line = passwd.lines().find(|l| l.starts_with("concord:")).expect("concord user in the root's passwd");
    let fields: Vec<&str> = line.split(':').collect();
    assert_eq!((fields[5], fields[6]), ("/var/lib/concord", "/usr/sbin/nologin"), "{line}");
    (fields[2].parse().unwrap(), fields[3].parse().unwrap())
}

#[test]
fn install_lays_out_every_file_with_owner_and_mode_and_reruns_as_an_upgrade() {
    let root = tempfile::tempdir().unwrap();
    let install = |binary: &Path| {
        run(Command::new(repo().join("scripts/install.sh")).arg("--root").arg(root.path()).arg("--binary").arg(binary))
    };
    install(Path::new(env!("CARGO_BIN_EXE_concord")));
    let (uid, gid) = concord_ids(root.path());
    assert!(uid > 0 && gid > 0, "a system user, not root");
    let r = |p: &str| root.path().join(p);
    for (path, expected) in [
        ("usr/local/bin/concord", (0o755, 0, 0)),
        ("etc/systemd/system/concord.service", (0o644, 0, 0)),
        ("etc/concord", (0o750, 0, gid)),
        ("etc/concord/concord.env", (0o640, 0, gid)),
        ("var/lib/concord", (0o750, uid, gid)),
    ] {
        assert_eq!(owner_mode(&r(path)), expected, "{path}");
    }
    assert_eq!(
        std::fs::read(r("usr/local/bin/concord")).unwrap(),
        std::fs::read(env!("CARGO_BIN_EXE_concord")).unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(r("etc/systemd/system/concord.service")).unwrap(),
        std::fs::read_to_string(repo().join("deploy/concord.service")).unwrap()
    );
    let env = std::fs::read_to_string(r("etc/concord/concord.env")).unwrap();
    assert!(env.contains("CONCORD_LISTEN=127.0.0.1:3030"), "{env}");

    // Re-running upgrades: a new binary replaces the old, the operator's settings stay, the user
    // is not added twice.
    std::fs::write(r("etc/concord/concord.env"), "SMTP_HOST=mail.example.com\n").unwrap();
    let newer = root.path().join("concord-next");
    std::fs::write(&newer, b"#!/bin/sh\necho next\n").unwrap();
    std::fs::set_permissions(&newer, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    install(&newer);
    assert_eq!(std::fs::read(r("usr/local/bin/concord")).unwrap(), b"#!/bin/sh\necho next\n");
    assert_eq!(std::fs::read_to_string(r("etc/concord/concord.env")).unwrap(), "SMTP_HOST=mail.example.com\n");
    assert_eq!(owner_mode(&r("etc/concord/concord.env")), (0o640, 0, gid));
    let passwd = std::fs::read_to_string(r("etc/passwd")).unwrap();
    assert_eq!(passwd.lines().filter(|l| l.starts_with("concord:")).count(), 1, "{passwd}");
    assert_eq!(concord_ids(root.path()), (uid, gid));

    // Uninstalling keeps settings and data; purging removes them and the user.
    std::fs::write(r("var/lib/concord/concord.db"), b"data").unwrap();
    run(Command::new(repo().join("scripts/uninstall.sh")).arg("--root").arg(root.path()));
    assert!(!r("usr/local/bin/concord").exists() && !r("etc/systemd/system/concord.service").exists());
    assert!(r("var/lib/concord/concord.db").exists() && r("etc/concord/concord.env").exists());
    run(Command::new(repo().join("scripts/uninstall.sh")).arg("--root").arg(root.path()).arg("--purge"));
    assert!(!r("var/lib/concord").exists() && !r("etc/concord").exists());
    assert!(!std::fs::read_to_string(r("etc/passwd")).unwrap().lines().any(|l| l.starts_with("concord:")));

    // Bad arguments are refused before anything is touched.
    let refused = Command::new(repo().join("scripts/install.sh")).arg("--bogus").output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let missing = Command::new(repo().join("scripts/install.sh"))
        .arg("--root")
        .arg(root.path().join("other"))
        .arg("--binary")
        .arg(root.path().join("absent"))
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(!root.path().join("other").exists());
}

#[test]
fn nginx_and_caddy_accept_the_proxy_examples() {
    tool("nginx", "-v", "nginx-light");
    tool("caddy", "version", "caddy");
    tool("openssl", "version", "openssl");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // nginx -t loads the certificate, so the example's Let's Encrypt paths get a throwaway one.
    run(Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=sync.example.com"])
        .arg("-keyout")
        .arg(d.join("key.pem"))
        .arg("-out")
        .arg(d.join("cert.pem")));
    let site = std::fs::read_to_string(repo().join("deploy/nginx.conf"))
        .unwrap()
        .replace("/etc/letsencrypt/live/sync.example.com/fullchain.pem", d.join("cert.pem").to_str().unwrap())
        .replace("/etc/letsencrypt/live/sync.example.com/privkey.pem", d.join("key.pem").to_str().unwrap());
    for needle in [
        "proxy_buffering off",
        "proxy_set_header Upgrade",
        "X-Forwarded-For",
        "X-Forwarded-Proto",
        "ssl_certificate",
        "location = /metrics",
    ] {
        assert!(site.contains(needle), "the nginx example sets {needle}");
    }
    std::fs::write(d.join("site.conf"), site).unwrap();
    let main = format!(
        "pid {0}/nginx.pid;\nerror_log {0}/error.log;\nevents {{}}\nhttp {{\n access_log off;\n include {0}/site.conf;\n}}\n",
        d.display()
    );
    std::fs::write(d.join("nginx.conf"), main).unwrap();
    run(Command::new("nginx").arg("-t").arg("-p").arg(d).arg("-c").arg(d.join("nginx.conf")));

    let caddyfile = repo().join("deploy/Caddyfile");
    assert!(std::fs::read_to_string(&caddyfile).unwrap().contains("flush_interval -1"), "event streams unbuffered");
    // Through a local proxy every client is loopback to Concord: the examples keep /metrics in.
    assert!(std::fs::read_to_string(&caddyfile).unwrap().contains("respond /metrics 404"), "metrics not proxied");
    // Caddy keeps state under $HOME; keep it in the scratch directory.
    run(Command::new("caddy")
        .args(["validate", "--adapter", "caddyfile", "--config"])
        .arg(&caddyfile)
        .env("HOME", d)
        .env("XDG_DATA_HOME", d)
        .env("XDG_CONFIG_HOME", d));
}
