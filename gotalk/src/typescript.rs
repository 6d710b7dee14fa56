//! TypeScript from typed services (feature `typescript`): the browser half of
//! `#[gotalk::service(typescript)]`.
//!
//! A [`Module`] gathers services and writes one TypeScript module for `gotalk.js` with, for
//! each service `Name`:
//!
//! - the argument, result and error types, declared from the Rust types by [`ts_rs`] (derive
//!   `ts_rs::TS` next to serde's traits; serde's renames are followed);
//! - `interface NameClient` and `nameClient(sock)`: call the service on the other peer;
//! - `interface Name` and `handleName(target, impl)`: implement the service in the page, on a
//!   `gotalk.Handlers` or on `gotalk` itself (its default handlers).
//!
//! Both directions come from the same definitions, so the server and the page can each serve
//! one service and call the other's. [`Module::javascript`] writes the same module without
//! types, for pages loaded without a build step.
//!
//! ```
//! # #[cfg(feature = "macros")] {
//! use gotalk::ts_rs::TS;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, TS)]
//! #[ts(crate = "gotalk::ts_rs")]
//! struct GreetIn { name: String }
//!
//! #[gotalk::service(typescript)]
//! trait Greeter {
//!     /// Says hello.
//!     async fn greet(&self, input: GreetIn) -> String;
//! }
//!
//! let ts = gotalk::typescript::Module::new().service::<GreeterService>().typescript();
//! assert!(ts.contains("export type GreetIn = { name: string, };"));
//! assert!(ts.contains("greet(input: GreetIn): Promise<string>;"));
//! assert!(ts.contains("export function greeterClient(sock: gotalk.Caller): GreeterClient"));
//! # }
//! ```
//!
//! 64-bit integers are declared as `number`, as `JSON.parse` gives them to the page.

use std::collections::HashSet;
use std::fmt::{self, Write};

use ts_rs::{TypeVisitor, TS};

use crate::service::{MethodDef, MethodKind, ServiceDef};

/// A service that can describe itself in TypeScript: implemented by the `NameService` types of
/// `#[gotalk::service(typescript)]`.
pub trait TypeScript: ServiceDef {
    /// Adds the service's methods (and through them, its types) to `out`.
    fn describe(out: &mut ServiceTs<'_>);
}

/// One method as TypeScript sees it.
#[derive(Clone, Debug)]
pub struct Method {
    /// The method on the wire.
    pub def: MethodDef,
    /// The method's name in TypeScript (the Rust name in camelCase).
    pub js_name: &'static str,
    /// The Rust doc comment, repeated as JSDoc.
    pub docs: &'static str,
    /// The TypeScript type of the input (of each input part when it streams), if there is one.
    pub input: Option<String>,
    /// The TypeScript type of the result (of each part when it streams), unless it is `()`.
    pub output: Option<String>,
    /// The TypeScript type of the declared error, for methods with one.
    pub error: Option<String>,
}

/// The service being described: collects its methods and declares its types in the module.
pub struct ServiceTs<'a> {
    module: &'a mut Module,
    methods: Vec<Method>,
}

impl fmt::Debug for ServiceTs<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceTs")
            .field("methods", &self.methods)
            .finish()
    }
}

impl ServiceTs<'_> {
    /// Declares `T` (and every type it uses) in the module; returns its name in TypeScript.
    pub fn ty<T: TS + 'static + ?Sized>(&mut self) -> String {
        self.module.declare::<T>();
        T::name(&self.module.cfg)
    }

    /// Adds a method.
    pub fn method(&mut self, m: Method) {
        self.methods.push(m);
    }
}

/// A TypeScript module made of services.
pub struct Module {
    cfg: ts_rs::Config,
    declared: HashSet<String>,
    types: Vec<String>,
    services: Vec<(&'static str, Vec<Method>)>,
}

impl fmt::Debug for Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Module")
            .field("types", &self.declared)
            .field(
                "services",
                &self.services.iter().map(|s| s.0).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Default for Module {
    fn default() -> Module {
        Module::new()
    }
}

struct Declare<'a>(&'a mut Module);

impl TypeVisitor for Declare<'_> {
    fn visit<T: TS + 'static + ?Sized>(&mut self) {
        self.0.declare::<T>();
    }
}

impl Module {
    /// An empty module.
    pub fn new() -> Module {
        Module {
            cfg: ts_rs::Config::new().with_large_int("number"),
            declared: HashSet::new(),
            types: Vec::new(),
            services: Vec::new(),
        }
    }

    /// Adds service `S` (a `NameService` generated with `#[gotalk::service(typescript)]`).
    pub fn service<S: TypeScript>(mut self) -> Module {
        let mut out = ServiceTs {
            module: &mut self,
            methods: Vec::new(),
        };
        S::describe(&mut out);
        let methods = out.methods;
        self.services.push((S::NAME, methods));
        self
    }

    /// Declares a type the services use (and, once, every type it uses in turn).
    fn declare<T: TS + 'static + ?Sized>(&mut self) {
        if T::output_path().is_some() {
            // A named type: declared once; generic ones once for all their arguments.
            if self.declared.insert(T::ident(&self.cfg)) {
                let mut decl = T::docs().unwrap_or_default();
                decl.push_str("export ");
                decl.push_str(&T::decl(&self.cfg));
                self.types.push(decl);
                T::visit_dependencies(&mut Declare(self));
            }
        } else {
            T::visit_dependencies(&mut Declare(self));
        }
        T::visit_generics(&mut Declare(self));
    }

    /// The module in TypeScript. It refers to `gotalk.js`'s types through the global
    /// `gotalk` namespace of `gotalk.d.ts` (include that file in the compilation).
    pub fn typescript(&self) -> String {
        self.render(true)
    }

    /// The same module in JavaScript (an ES module without types), for a page that loads it
    /// with `<script type="module">` and no build step.
    pub fn javascript(&self) -> String {
        self.render(false)
    }

    fn render(&self, ts: bool) -> String {
        let mut o = String::new();
        o.push_str(
            "// Generated by gotalk (#[gotalk::service]) from the Rust service definitions: \
             do not edit.\n",
        );
        let names: Vec<&str> = self.services.iter().map(|s| s.0).collect();
        let _ = writeln!(o, "// Services: {}.", names.join(", "));
        o.push_str(if ts { HELPERS_TS } else { HELPERS_JS });
        if ts && !self.types.is_empty() {
            o.push_str("\n// ---- types\n\n");
            for t in &self.types {
                o.push_str(t);
                o.push_str("\n\n");
            }
        }
        for (name, methods) in &self.services {
            render_service(&mut o, name, methods, ts);
        }
        o
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

fn js_string(s: &str) -> String {
    // serde_json escapes exactly what a JS string literal needs.
    serde_json::to_string(s).unwrap_or_default()
}

fn jsdoc(o: &mut String, indent: &str, docs: &str, error: Option<&str>) {
    if docs.is_empty() && error.is_none() {
        return;
    }
    let _ = writeln!(o, "{indent}/**");
    for line in docs.lines() {
        let line = line.replace("*/", "*\\/");
        let _ = writeln!(o, "{indent} * {line}");
    }
    if let Some(e) = error {
        let _ = writeln!(
            o,
            "{indent} * @throws {{ServiceError<{e}>}} when the service answers with its error"
        );
    }
    let _ = writeln!(o, "{indent} */");
}

fn render_service(o: &mut String, name: &str, methods: &[Method], ts: bool) {
    let lower = lower_first(name);
    let _ = writeln!(o, "\n// ---- service {name}\n");
    if ts {
        let _ = writeln!(
            o,
            "/** Service {name} as its implementation provides it (see handle{name}). */"
        );
        let _ = writeln!(o, "export interface {name} {{");
        for m in methods {
            jsdoc(o, "  ", m.docs, m.error.as_deref());
            let out = m.output.as_deref().unwrap_or("void");
            let input = m.input.as_deref().unwrap_or("");
            let (param, ret) = match m.def.kind {
                MethodKind::Notification => (
                    m.input.as_ref().map(|t| format!("input: {t}, ")),
                    "void".to_owned(),
                ),
                MethodKind::Request => (
                    m.input.as_ref().map(|t| format!("input: {t}, ")),
                    format!("{out} | Promise<{out}>"),
                ),
                MethodKind::Stream {
                    input: si,
                    output: so,
                } => (
                    Some(if si {
                        format!("input: AsyncIterable<{input}>, ")
                    } else {
                        m.input
                            .as_ref()
                            .map(|t| format!("input: {t}, "))
                            .unwrap_or_default()
                    }),
                    if so {
                        format!("AsyncIterable<{out}> | Iterable<{out}>")
                    } else {
                        format!("{out} | Promise<{out}>")
                    },
                ),
            };
            let _ = writeln!(
                o,
                "  {}({}sock: gotalk.Sock): {ret};",
                m.js_name,
                param.unwrap_or_default()
            );
        }
        o.push_str("}\n\n");
        let _ = writeln!(
            o,
            "/** Calls service {name} on the other peer (see {lower}Client). */"
        );
        let _ = writeln!(o, "export interface {name}Client {{");
        for m in methods {
            jsdoc(o, "  ", m.docs, m.error.as_deref());
            let out = m.output.as_deref().unwrap_or("void");
            let input = m.input.as_deref().unwrap_or("");
            let (param, ret) = match m.def.kind {
                MethodKind::Notification => (
                    m.input.as_ref().map(|t| format!("input: {t}")),
                    "void".to_owned(),
                ),
                MethodKind::Request => (
                    m.input.as_ref().map(|t| format!("input: {t}")),
                    format!("Promise<{out}>"),
                ),
                MethodKind::Stream {
                    input: si,
                    output: so,
                } => (
                    if si {
                        Some(format!("input: Iterable<{input}> | AsyncIterable<{input}>"))
                    } else {
                        m.input.as_ref().map(|t| format!("input: {t}"))
                    },
                    if so {
                        format!("AsyncIterable<{out}>")
                    } else {
                        format!("Promise<{out}>")
                    },
                ),
            };
            let _ = writeln!(o, "  {}({}): {ret};", m.js_name, param.unwrap_or_default());
        }
        o.push_str("}\n\n");
    }

    // The client.
    let _ = writeln!(
        o,
        "/** A client of service {name} calling through `sock` (a gotalk.Sock). */"
    );
    if ts {
        let _ = writeln!(
            o,
            "export function {lower}Client(sock: gotalk.Caller): {name}Client {{"
        );
    } else {
        let _ = writeln!(o, "export function {lower}Client(sock) {{");
    }
    o.push_str("  return {\n");
    for m in methods {
        let wire = js_string(m.def.name);
        let typed = m.def.typed_error;
        let (param, value) = match m.input {
            Some(_) => ("input", "input"),
            None => ("", "null"),
        };
        let body = match m.def.kind {
            MethodKind::Notification => format!("{{ sock.notify({wire}, {value}); }}"),
            MethodKind::Request => format!("call(sock, {wire}, {value}, {typed})"),
            MethodKind::Stream {
                input: si,
                output: so,
            } => {
                let stream = format!("streamCall(sock, {wire}, {value}, {si}, {typed})");
                if so {
                    stream
                } else {
                    format!("single({stream})")
                }
            }
        };
        let _ = writeln!(o, "    {}: ({param}) => {body},", m.js_name);
    }
    o.push_str("  };\n}\n\n");

    // The handlers.
    let _ = writeln!(
        o,
        "/** Serves service {name} on `target` (gotalk itself, or a gotalk.Handlers). */"
    );
    if ts {
        let _ = writeln!(
            o,
            "export function handle{name}(target: gotalk.HandlerTarget, service: {name}): void {{"
        );
    } else {
        let _ = writeln!(o, "export function handle{name}(target, service) {{");
    }
    for m in methods {
        let wire = js_string(m.def.name);
        let typed = m.def.typed_error;
        let js = m.js_name;
        let args = if m.input.is_some() {
            "input, sock"
        } else {
            "sock"
        };
        let line = match m.def.kind {
            MethodKind::Notification => format!(
                "target.handleNotification({wire}, (input, _name, sock) => {{ service.{js}({args}); }});"
            ),
            MethodKind::Request => format!(
                "target.handleRequest({wire}, (input, _result, _op, sock) => answer(() => service.{js}({args}), {typed}));"
            ),
            MethodKind::Stream { input: si, output: so } => {
                let args = if si {
                    "input, sock".to_owned()
                } else {
                    args.to_owned()
                };
                format!(
                    "target.handleStreamRequest({wire}, (sock, _op, parts, out) => serveStream(parts, out, {si}, {so}, {typed}, (input) => service.{js}({args})));"
                )
            }
        };
        let _ = writeln!(o, "  {line}");
    }
    o.push_str("}\n");
}

/// The runtime of a generated module, typed. Kept in step with `HELPERS_JS`.
const HELPERS_TS: &str = r#"
/** The error of a method that declares its error type: `data` is the service's error value. */
export class ServiceError<E = unknown> extends Error {
  readonly data: E;
  constructor(data: E) {
    super(typeof data === 'string' ? data : JSON.stringify(data));
    this.name = 'ServiceError';
    this.data = data;
  }
}

// An ErrorResult of a method with a declared error type carries the error as JSON.
function typedError(err: unknown): unknown {
  if (err instanceof Error && !(err instanceof ServiceError)) {
    try { return new ServiceError(JSON.parse(err.message)); } catch (_) { /* a plain message */ }
  }
  return err;
}

function call(sock: gotalk.Caller, op: string, value: unknown, typed: boolean): Promise<any> {
  const p = sock.request(op, value);
  return typed ? p.catch((err) => { throw typedError(err); }) : p;
}

async function* streamCall(sock: gotalk.Caller, op: string, input: any, streaming: boolean,
                           typed: boolean): AsyncGenerator<any, void, undefined> {
  const req = sock.streamRequest(op);
  let stop = false;
  let failure: unknown = null;
  if (streaming) {
    (async () => {
      try {
        for await (const v of input as AsyncIterable<unknown>) {
          if (stop) return;
          req.write(JSON.stringify(v));
        }
      } catch (err) {
        failure = err instanceof Error ? err : new Error(String(err));
      }
      req.end();
    })();
  } else {
    req.write(JSON.stringify(input));
    req.end();
  }
  try {
    for await (const part of req) yield JSON.parse(part.toString());
  } catch (err) {
    throw typed ? typedError(err) : err;
  } finally {
    stop = true;
  }
  if (failure) throw failure;
}

async function single(parts: AsyncIterable<any>): Promise<any> {
  let first: unknown = null;
  let seen = false;
  for await (const v of parts) if (!seen) { first = v; seen = true; }
  return first;
}

function errorFor(err: unknown, typed: boolean): unknown {
  return typed && err instanceof ServiceError ? new Error(JSON.stringify(err.data)) : err;
}

// JSON has no `undefined`: a handler that returns nothing answers null.
function answer(run: () => unknown, typed: boolean): Promise<unknown> {
  return new Promise((resolve) => resolve(run())).then(
    (v) => (v === undefined ? null : v),
    (err) => { throw errorFor(err, typed); });
}

async function serveStream(parts: gotalk.StreamInput, out: gotalk.StreamOutput, streamingIn: boolean,
                           streamingOut: boolean, typed: boolean, run: (input: any) => any): Promise<void> {
  const values = (async function* () {
    for await (const part of parts) yield JSON.parse(part.toString());
  })();
  try {
    let input: unknown = values;
    if (!streamingIn) {
      const first = await values.next();
      input = first.done ? null : first.value;
    }
    const result = run(input);
    if (streamingOut) {
      for await (const v of result) out.write(JSON.stringify(v === undefined ? null : v));
    } else {
      const v = await result;
      out.write(JSON.stringify(v === undefined ? null : v));
    }
    out.end();
  } catch (err) {
    out.error(errorFor(err, typed) as Error);
  }
}
"#;

/// `HELPERS_TS` without its types.
const HELPERS_JS: &str = r#"
/** The error of a method that declares its error type: `data` is the service's error value. */
export class ServiceError extends Error {
  constructor(data) {
    super(typeof data === 'string' ? data : JSON.stringify(data));
    this.name = 'ServiceError';
    this.data = data;
  }
}

// An ErrorResult of a method with a declared error type carries the error as JSON.
function typedError(err) {
  if (err instanceof Error && !(err instanceof ServiceError)) {
    try { return new ServiceError(JSON.parse(err.message)); } catch (_) { /* a plain message */ }
  }
  return err;
}

function call(sock, op, value, typed) {
  const p = sock.request(op, value);
  return typed ? p.catch((err) => { throw typedError(err); }) : p;
}

async function* streamCall(sock, op, input, streaming, typed) {
  const req = sock.streamRequest(op);
  let stop = false;
  let failure = null;
  if (streaming) {
    (async () => {
      try {
        for await (const v of input) {
          if (stop) return;
          req.write(JSON.stringify(v));
        }
      } catch (err) {
        failure = err instanceof Error ? err : new Error(String(err));
      }
      req.end();
    })();
  } else {
    req.write(JSON.stringify(input));
    req.end();
  }
  try {
    for await (const part of req) yield JSON.parse(part.toString());
  } catch (err) {
    throw typed ? typedError(err) : err;
  } finally {
    stop = true;
  }
  if (failure) throw failure;
}

async function single(parts) {
  let first = null;
  let seen = false;
  for await (const v of parts) if (!seen) { first = v; seen = true; }
  return first;
}

function errorFor(err, typed) {
  return typed && err instanceof ServiceError ? new Error(JSON.stringify(err.data)) : err;
}

// JSON has no `undefined`: a handler that returns nothing answers null.
function answer(run, typed) {
  return new Promise((resolve) => resolve(run())).then(
    (v) => (v === undefined ? null : v),
    (err) => { throw errorFor(err, typed); });
}

async function serveStream(parts, out, streamingIn, streamingOut, typed, run) {
  const values = (async function* () {
    for await (const part of parts) yield JSON.parse(part.toString());
  })();
  try {
    let input = values;
    if (!streamingIn) {
      const first = await values.next();
      input = first.done ? null : first.value;
    }
    const result = run(input);
    if (streamingOut) {
      for await (const v of result) out.write(JSON.stringify(v === undefined ? null : v));
    } else {
      const v = await result;
      out.write(JSON.stringify(v === undefined ? null : v));
    }
    out.end();
  } catch (err) {
    out.error(errorFor(err, typed));
  }
}
"#;
