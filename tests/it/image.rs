//! The container image's recipe, checked without a Docker engine: base
//! images pinned by digest, a dependency layer before the sources, a
//! numeric non-root user, CA certificates (a distroless cc base), no
//! HEALTHCHECK, a `.dockerignore` that keeps every build output out of the
//! context, the builder new enough for the crates' `rust-version`, and the
//! shipped config valid with the image's environment. CI also builds the
//! image's code (`cargo build --release --locked --bin statehold`, in
//! `scripts/test.sh`; the image's `dist` profile is the same code with fat
//! LTO, too slow a link for CI's budget).

use crate::support;

const DOCKERFILE: &str = include_str!("../../Dockerfile");

/// The instructions, comments and continuations folded.
fn instructions() -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut pending = String::new();
    for line in DOCKERFILE.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => pending.push_str(part),
            None => {
                pending.push_str(line);
                out.push(std::mem::take(&mut pending));
            }
        }
    }
    out
}

#[test]
fn the_image_is_pinned_cached_unprivileged_and_trusts_public_cas() {
    let all = instructions();
    let froms: Vec<&String> = all.iter().filter(|i| i.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "a build stage and a runtime stage");
    for from in &froms {
        let image = from.split_whitespace().nth(1).unwrap();
        let (_, digest) = image
            .split_once("@sha256:")
            .unwrap_or_else(|| panic!("{from}: not pinned by digest"));
        assert!(
            digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
            "{from}"
        );
    }
    // The runtime base carries glibc and CA certificates (rediss:// to a
    // managed Redis without store.tls_ca).
    assert!(
        froms[1].contains("gcr.io/distroless/cc-debian12"),
        "{}",
        froms[1]
    );
    // The builder's Rust is at least every crate's rust-version.
    let builder: Vec<u32> = froms[0]
        .split("rust:")
        .nth(1)
        .and_then(|t| t.split('-').next())
        .unwrap()
        .split('.')
        .map(|n| n.parse().unwrap())
        .collect();
    let wanted: Vec<u32> = include_str!("../../Cargo.toml")
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .unwrap()
        .split('.')
        .map(|n| n.parse().unwrap())
        .collect();
    assert!(
        builder >= wanted,
        "builder {builder:?} < rust-version {wanted:?}"
    );

    // Dependencies build before the sources arrive (a cached layer).
    let at = |needle: &str| {
        all.iter()
            .position(|i| i.starts_with(needle))
            .unwrap_or_else(|| panic!("no {needle}"))
    };
    let deps = all
        .iter()
        .position(|i| i.starts_with("RUN ") && i.contains("cargo build"))
        .expect("a cargo build");
    assert!(
        deps < at("COPY src "),
        "dependencies build before the sources are copied"
    );
    let release = all.iter().rposition(|i| i.contains("cargo build")).unwrap();
    assert!(all[release].contains("cargo build --profile dist --locked --bin statehold"));

    // A numeric user (runAsNonRoot needs one) that is not root, last.
    let user = all
        .iter()
        .rev()
        .find(|i| i.starts_with("USER "))
        .expect("USER");
    let (uid, gid) = user[5..].trim().split_once(':').expect("USER uid:gid");
    let (uid, gid): (u32, u32) = (
        uid.parse().expect("numeric uid"),
        gid.parse().expect("numeric gid"),
    );
    assert!(uid > 0 && gid > 0);
    assert!(
        all.iter()
            .any(|i| i.starts_with("COPY --from=build --chown=65532:65532")),
        "the data dir is the user's"
    );
    assert!(
        !all.iter().any(|i| i.starts_with("HEALTHCHECK")),
        "probes live in the manifests"
    );
    assert!(
        !DOCKERFILE.to_lowercase().contains("static"),
        "the binary is dynamic (glibc)"
    );

    let ignored: Vec<&str> = include_str!("../../.dockerignore").lines().collect();
    for output in ["target", "fuzz/target", ".git"] {
        assert!(ignored.contains(&output), ".dockerignore lacks {output}");
    }
}

/// The shipped config, as the image runs it (its ENV lines), passes
/// `check-config`; listening on every address it is refused until its
/// routes are verified (safe by default: the README's `docker run` mounts a
/// config that verifies).
#[test]
fn the_shipped_config_is_valid_in_the_image() {
    let env_line = instructions()
        .into_iter()
        .find(|i| i.starts_with("ENV "))
        .expect("ENV");
    let mut env: Vec<(String, String)> = env_line[4..]
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .filter(|(k, _)| k != "STATEHOLD_CONFIG")
        .collect();
    let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    for name in ["STATEHOLD_KEY_SECRET", "STATEHOLD_KEY_K1"] {
        env.push((name.into(), key.into()));
    }
    env.push(("TELEGRAM_SECRET_TOKEN".into(), "x".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let out = support::run_statehold(&["check-config", "--config", "config.toml"], &env);
    support::assert_exit(&out, 0);
    let mut public = env.clone();
    public.push(("STATEHOLD_SERVER__LISTEN", "0.0.0.0:8080"));
    let out = support::run_statehold(&["check-config", "--config", "config.toml"], &public);
    support::assert_exit(&out, 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("route[0].verify"));
}
