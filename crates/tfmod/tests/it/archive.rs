//! The archive is the same bytes from any checkout of the same tree.

use std::fs::File;
use std::time::{Duration, SystemTime};

use tfmod::archive;

use crate::harness;

#[test]
fn two_checkouts_with_other_mtimes_and_order_give_the_same_bytes() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    harness::module(a.path(), "same");
    // The second checkout: files written in another order, at other times.
    for f in [
        "outputs.tf",
        "modules/subnets/main.tf",
        "variables.tf",
        "main.tf",
    ] {
        let to = b.path().join(f);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(a.path().join(f), &to).unwrap();
        File::options()
            .write(true)
            .open(&to)
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(86_400 * 400))
            .unwrap();
    }
    let x = archive::build(a.path()).unwrap();
    let y = archive::build(b.path()).unwrap();
    let bytes = std::fs::read(x.path()).unwrap();
    assert_eq!(x.sha256, y.sha256);
    assert_eq!(bytes, std::fs::read(y.path()).unwrap());
    assert_eq!(archive::sha256_hex(&bytes), x.sha256);
    assert_eq!(
        x.paths,
        [
            "main.tf",
            "modules/subnets/main.tf",
            "outputs.tf",
            "variables.tf"
        ],
        "sorted; .terraform*, tests/ and state left out"
    );

    // What go-getter will unpack: the module at the root, fixed times and modes.
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    for i in 0..zip.len() {
        let f = zip.by_index(i).unwrap();
        assert_eq!(
            f.last_modified(),
            Some(zip::DateTime::default()),
            "{}",
            f.name()
        );
        assert_eq!(f.unix_mode(), Some(0o100644), "{}", f.name());
    }

    // A content change changes the bytes.
    std::fs::write(b.path().join("main.tf"), "# changed\n").unwrap();
    assert_ne!(archive::build(b.path()).unwrap().sha256, x.sha256);
}

#[test]
fn a_tree_without_a_top_level_tf_file_is_refused() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("vpc")).unwrap();
    std::fs::write(d.path().join("vpc/main.tf"), "").unwrap();
    let e = archive::build(d.path()).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert!(e.to_string().contains("archive's root"), "{e}");
}
