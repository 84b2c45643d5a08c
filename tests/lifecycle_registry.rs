//! switch and upgrade from a registry on a simulated host: a real
//! distribution registry on loopback, plain http allowed by a test
//! registries.conf.

mod common;

use common::host::SimHost;
use common::registry::{RegistryServer, TestConfig};
use common::*;

#[test]
fn switch_to_a_registry_then_check_and_upgrade() {
    require_root();
    let work = scratch();
    let layout = work.path().join("os");
    let v1 = oci::versioned_image(&layout, "v1", "v1", &[]);
    oci::versioned_image(&layout, "v2", "v2", &[]);
    oci::versioned_image(&layout, "v3", "v3", &[]);
    let disk = work.path().join("disk.raw");
    cbootc_ok(&[
        "install",
        "to-disk",
        "--source",
        &v1,
        "--size",
        "2G",
        path_str(&disk),
    ]);
    let host = SimHost::new(&disk);

    let registry = RegistryServer::start(None);
    let cfg = TestConfig::new(&[&registry.addr()]);
    let conf = cfg.dir.path().join("registries.conf");
    let env = [("CONTAINERS_REGISTRIES_CONF", conf.as_path())];
    registry.push(&layout, "v2", "os:stable", None, false);
    let reference = format!("docker://{}/os:stable", registry.addr());

    // switch pulls from the registry and tracks it.
    let out = host.cbootc_env(&["switch", &reference], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let v2 = independent_boot_id(&format!("oci:{}:v2", layout.display()));
    assert_eq!(
        host.record_ids()[0],
        v2,
        "the registry pull gives the oci: id"
    );
    let cfg_text = std::fs::read_to_string(host.config_path()).unwrap();
    assert!(
        cfg_text.contains(&format!("ref = \"{reference}\"")),
        "{cfg_text}"
    );
    host.boot(&v2);

    // --check: nothing new (exit 1), then a new push (exit 0); no pull.
    let out = host.cbootc_env(&["upgrade", "--check"], &env);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("No update"));
    registry.push(&layout, "v3", "os:stable", None, false);
    let out = host.cbootc_env(&["upgrade", "--check"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Update available"));
    assert_eq!(host.record_ids()[0], v2, "--check changes nothing");

    // upgrade stages v3.
    let out = host.cbootc_env(&["upgrade"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let v3 = independent_boot_id(&format!("oci:{}:v3", layout.display()));
    assert_eq!(host.record_ids()[..2], [v3, v2]);
    let st = host.status_json();
    assert_eq!(st["spec"]["image"]["transport"], "registry");
    assert_eq!(
        st["spec"]["image"]["image"],
        format!("{}/os:stable", registry.addr())
    );

    // Without the insecure entry the plain-http registry is refused (TLS
    // by default) and nothing changes.
    let empty = TestConfig::new(&[]);
    let conf = empty.dir.path().join("registries.conf");
    let before = host.record_ids();
    let out = host.cbootc_env(
        &["switch", &format!("docker://{}/os:v9", registry.addr())],
        &[("CONTAINERS_REGISTRIES_CONF", conf.as_path())],
    );
    assert!(!out.status.success());
    assert_eq!(host.record_ids(), before);
}
