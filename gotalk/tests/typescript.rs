//! The TypeScript of typed services: the typed-web example's module is generated from its Rust
//! definitions and checked in (`examples/typed-web/service.ts`, type-checked with its page by
//! `tsc` in gotalk/js/test/service.test.js); this test fails when it is out of date.
//!
//! `GOTALK_WRITE_TS=1 cargo test -p gotalk --test typescript` rewrites it.

#[path = "../examples/typed-web/service.rs"]
#[allow(dead_code)]
mod service;

use std::path::PathBuf;

#[test]
fn typed_web_module_is_current() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/typed-web/service.ts");
    let want = service::module().typescript();
    if std::env::var_os("GOTALK_WRITE_TS").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let got = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        got == want,
        "{} is out of date: GOTALK_WRITE_TS=1 cargo test -p gotalk --test typescript",
        path.display()
    );
}

#[test]
fn javascript_is_the_same_module_without_types() {
    let js = service::module().javascript();
    assert!(js.contains("export function boardClient(sock) {"));
    assert!(js.contains("export function handlePage(target, service) {"));
    assert!(!js.contains("export type"));
    assert!(!js.contains(": gotalk."));
}
