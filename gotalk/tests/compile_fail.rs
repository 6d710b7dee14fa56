//! Misuse of `#[gotalk::service]` fails to compile with a message that says what to do:
//! `tests/ui/*.rs`, each with the expected compiler output next to it (`*.stderr`;
//! `TRYBUILD=overwrite cargo test -p gotalk --test compile_fail` rewrites them).

#[test]
fn compile_fail() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
