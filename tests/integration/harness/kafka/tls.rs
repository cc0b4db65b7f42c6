//! A test CA and a broker certificate for the `SSL` / `SASL_SSL` listeners, made with `keytool`.
//!
//! The broker certificate is signed by a separate CA (rustls's verifier rejects a self-signed
//! CA certificate used as the server's own certificate) and is valid for `127.0.0.1` and
//! `localhost`, so hostname verification works against the advertised loopback address.
//! The material is made once (about 2 s) and cached in `<target>/kafka-harness/tls/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::install::{Install, ensure_dir, install, with_install_lock};

/// Password of both PKCS12 stores. Test-only material: the CA signs nothing else.
pub(crate) const STORE_PASSWORD: &str = "routegate-test";

/// Where the test CA and the broker keystore are.
#[derive(Debug)]
pub(crate) struct TlsMaterial {
    /// The CA certificate (PEM) that clients must trust.
    pub ca_pem: PathBuf,
    /// PKCS12 keystore with the broker's key and its chain, password [`STORE_PASSWORD`].
    pub keystore: PathBuf,
}

/// The cached TLS material, made on first use. Blocking.
pub(crate) fn tls_material() -> &'static TlsMaterial {
    static TLS: OnceLock<Result<TlsMaterial, String>> = OnceLock::new();
    match TLS.get_or_init(|| make(install())) {
        Ok(tls) => tls,
        Err(message) => panic!("{message}"),
    }
}

fn make(install: &Install) -> Result<TlsMaterial, String> {
    let dir = install.home.join("tls");
    with_install_lock(&install.home, || {
        ensure_dir(&dir, "tls-v1", |tmp| generate(install, tmp))
    })?;
    Ok(TlsMaterial {
        ca_pem: dir.join("ca.pem"),
        keystore: dir.join("broker.p12"),
    })
}

fn generate(install: &Install, dir: &Path) -> Result<(), String> {
    const NEW_KEY: &[&str] = &[
        "-keyalg",
        "EC",
        "-groupname",
        "secp256r1",
        "-validity",
        "3650",
    ];
    const CA: &[&str] = &["-keystore", "ca.p12"];
    const BROKER: &[&str] = &["-keystore", "broker.p12"];
    let steps: [&[&[&str]]; 7] = [
        &[
            &[
                "-genkeypair",
                "-alias",
                "ca",
                "-dname",
                "CN=routegate-test-ca",
                "-ext",
                "bc:c",
            ],
            NEW_KEY,
            CA,
        ],
        &[
            &["-exportcert", "-rfc", "-alias", "ca", "-file", "ca.pem"],
            CA,
        ],
        &[
            &["-genkeypair", "-alias", "broker", "-dname", "CN=localhost"],
            NEW_KEY,
            BROKER,
        ],
        &[
            &["-certreq", "-alias", "broker", "-file", "broker.csr"],
            BROKER,
        ],
        &[
            &[
                "-gencert",
                "-rfc",
                "-alias",
                "ca",
                "-infile",
                "broker.csr",
                "-outfile",
                "broker.pem",
            ],
            &[
                "-validity",
                "3650",
                "-ext",
                "SAN=ip:127.0.0.1,dns:localhost",
            ],
            &["-ext", "EKU=serverAuth", "-ext", "KU=digitalSignature"],
            CA,
        ],
        &[
            &[
                "-importcert",
                "-noprompt",
                "-alias",
                "ca",
                "-file",
                "ca.pem",
            ],
            BROKER,
        ],
        &[
            &[
                "-importcert",
                "-noprompt",
                "-alias",
                "broker",
                "-file",
                "broker.pem",
            ],
            BROKER,
        ],
    ];
    let keytool = install.java.with_file_name("keytool");
    let keytool = if keytool.exists() {
        keytool
    } else {
        PathBuf::from("keytool")
    };
    for step in steps {
        let args = step.concat();
        let output = Command::new(&keytool)
            .args(["-J-XX:+UseSerialGC", "-J-XX:TieredStopAtLevel=1"])
            .args(["-storetype", "PKCS12", "-storepass", STORE_PASSWORD])
            .args(&args)
            .current_dir(dir)
            .output()
            .map_err(|e| format!("cannot run {} (part of the JDK): {e}", keytool.display()))?;
        if !output.status.success() {
            return Err(format!(
                "Kafka test harness: `keytool {}` failed:\n{}{}",
                args.join(" "),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }
    Ok(())
}
