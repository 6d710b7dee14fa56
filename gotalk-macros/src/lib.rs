//! The `#[gotalk::service]` attribute. Use it through the `gotalk` crate (feature `macros`, on
//! by default), whose documentation of `gotalk::service` describes what it generates; the
//! runtime it builds on is `gotalk::service` (the module).
//!
//! This crate only parses the trait and writes code: every check that needs types (is an
//! argument a serde type?) is left to the compiler, through bounds spanned at the user's types.

use std::collections::HashMap;

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{
    parse_quote, Attribute, FnArg, GenericArgument, Ident, ItemTrait, LitStr, PathArguments,
    ReturnType, TraitItem, TraitItemFn, Type,
};

/// Turns a trait into a typed gotalk service, defined once for both ends of a connection.
///
/// For `trait Greeter` it generates, next to the trait:
///
/// - `GreeterServer<T>`: `handlers.service(GreeterServer::new(my_impl))` registers one handler
///   per method (`T: Greeter + Send + Sync + 'static`; `from_arc` shares an `Arc<T>`);
/// - `GreeterClient<C = Sock>`: `GreeterClient::new(&sock).greet(input).await` calls the peer
///   through any `gotalk::service::Caller` (a `Sock`, `&Sock`, `Arc<Sock>`, a pool);
/// - `GreeterService`: the names and kinds on the wire (`gotalk::service::ServiceDef`), and with
///   `#[gotalk::service(typescript)]` the service's TypeScript (`gotalk::typescript::Module`).
///
/// Method shapes (the op name is the method name; `#[gotalk(name = "...")]` renames one,
/// `#[gotalk::service(rename_all = "kebab-case" | "camelCase")]` all of them):
///
/// ```text
/// async fn op(&self, input: In) -> Out;                         request: JSON in, JSON out
/// async fn op(&self, input: In) -> Result<Out, HandlerError>;   errors as messages (ErrorResult)
/// async fn op(&self, input: In) -> Result<Out, E>;              typed errors: E as JSON; the
///                                                               client gets CallError::Service(E)
/// fn name(&self, input: In);                                    notification
/// async fn op(&self, input: Parts<In>) -> Parts<Out>;           stream request, parts both ways
/// async fn op(&self, input: In) -> Parts<Out>;                  one input, a stream of results
/// async fn op(&self, input: Parts<In>) -> Out;                  a stream of inputs, one result
/// async fn op(&self) -> Out;                                    no input (the client sends null)
/// async fn op(&self, sock: &Sock, input: In) -> Out;            the calling connection too
/// ```
///
/// Payload types are serde types (`Serialize + Deserialize`), and with `typescript` also
/// `ts_rs::TS`. The payloads are exactly those of a handler written with
/// `Handlers::handle(op, |input: In| ...)` and a call written with `sock.request(op, &input)`,
/// so typed and untyped peers (and the reference implementations) talk to each other.
///
/// Implementations write plain `async fn`s: the trait's async methods become
/// `fn ... -> impl Future<Output = R> + Send`, so their futures must be `Send`.
///
/// Misuse is a compile error that says what to write instead: a generic method, a payload type
/// that is not a serde type, two methods with the same name on the wire, more than one payload
/// argument, an `async fn` without a result, a result from a plain `fn`, `Result<T>` without its
/// error type.
#[proc_macro_attribute]
pub fn service(attr: TokenStream, item: TokenStream) -> TokenStream {
    match expand(attr.into(), item.into()) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

#[derive(Default)]
struct Args {
    typescript: bool,
    rename_all: Option<(String, Span)>,
}

enum Input {
    None,
    Value(Type),
    Stream(Type),
}

enum Output {
    Notification,
    /// An infallible request: `-> T`.
    Value(Type),
    /// `-> Result<T, HandlerError>`: errors are messages.
    Result(Type),
    /// `-> Result<T, E>`: errors are values of `E`, JSON on the wire.
    Typed(Type, Box<Type>),
    Stream(Type),
}

impl Output {
    fn value_type(&self) -> Option<&Type> {
        match self {
            Output::Notification => None,
            Output::Value(t) | Output::Result(t) | Output::Typed(t, _) | Output::Stream(t) => {
                Some(t)
            }
        }
    }
}

struct Method {
    ident: Ident,
    /// The operation or notification name on the wire.
    name: String,
    docs: Vec<Attribute>,
    sock: bool,
    input: Input,
    output: Output,
}

impl Method {
    fn is_stream(&self) -> bool {
        matches!(self.input, Input::Stream(_)) || matches!(self.output, Output::Stream(_))
    }
}

fn expand(attr: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    let args = parse_args(attr)?;
    let mut item: ItemTrait = syn::parse2(item).map_err(|e| {
        syn::Error::new(
            e.span(),
            "#[gotalk::service] goes on a trait whose methods are the service's operations",
        )
    })?;
    if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
        return Err(syn::Error::new(
            item.generics.span(),
            "a gotalk service trait cannot be generic: its payload types are fixed on the wire",
        ));
    }

    let mut errors: Option<syn::Error> = None;
    let mut push = |e: syn::Error| match &mut errors {
        Some(all) => all.combine(e),
        None => errors = Some(e),
    };
    let mut methods = Vec::new();
    for it in &mut item.items {
        match it {
            TraitItem::Fn(f) => match parse_method(f, &args) {
                Ok(m) => methods.push(m),
                Err(e) => push(e),
            },
            other => push(syn::Error::new(
                other.span(),
                "a gotalk service trait holds methods only (each one an operation)",
            )),
        }
    }
    // Requests (single and streaming) share one table of names on the wire, notifications
    // another: a name may be used once in each.
    let mut seen: HashMap<(bool, &str), &Ident> = HashMap::new();
    for m in &methods {
        let notification = matches!(m.output, Output::Notification);
        if let Some(first) = seen.insert((notification, &m.name), &m.ident) {
            let what = if notification {
                "notification"
            } else {
                "operation"
            };
            push(syn::Error::new(
                m.ident.span(),
                format!(
                    "{what} name `{}` is used by both `{first}` and `{}`: rename one with \
                     #[gotalk(name = \"...\")]",
                    m.name, m.ident
                ),
            ));
        }
    }
    if let Some(e) = errors {
        return Err(e);
    }

    for it in &mut item.items {
        if let TraitItem::Fn(f) = it {
            rewrite_signature(f);
        }
    }
    // A program may only call a service (through the client) and never implement it.
    item.attrs.push(parse_quote!(#[allow(dead_code)]));
    let client = client(&item, &methods);
    let server = server(&item, &methods);
    let def = description(&item, &methods, &args);
    let checks = payload_checks(&methods);
    Ok(quote! {
        #item
        #client
        #server
        #def
        #checks
    })
}

fn parse_args(attr: TokenStream2) -> syn::Result<Args> {
    let mut args = Args::default();
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("typescript") {
            args.typescript = true;
            Ok(())
        } else if meta.path.is_ident("rename_all") {
            let s: LitStr = meta.value()?.parse()?;
            match s.value().as_str() {
                "kebab-case" | "camelCase" | "snake_case" => {
                    args.rename_all = Some((s.value(), s.span()));
                    Ok(())
                }
                _ => Err(syn::Error::new(
                    s.span(),
                    "rename_all takes \"kebab-case\", \"camelCase\" or \"snake_case\"",
                )),
            }
        } else {
            Err(meta.error(
                "unknown argument: #[gotalk::service] takes `typescript` and `rename_all = \"...\"`",
            ))
        }
    });
    syn::parse::Parser::parse2(parser, attr)?;
    Ok(args)
}

fn camel_case(snake: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = !out.is_empty();
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn wire_name(method: &str, args: &Args) -> String {
    match args.rename_all.as_ref().map(|(s, _)| s.as_str()) {
        Some("kebab-case") => method.replace('_', "-"),
        Some("camelCase") => camel_case(method),
        _ => method.to_owned(),
    }
}

/// The last segment of a path type, with its generic arguments.
fn last_segment(ty: &Type) -> Option<&syn::PathSegment> {
    match ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last(),
        _ => None,
    }
}

fn type_args(seg: &syn::PathSegment) -> Vec<&Type> {
    match &seg.arguments {
        PathArguments::AngleBracketed(a) => a
            .args
            .iter()
            .filter_map(|a| match a {
                GenericArgument::Type(t) => Some(t),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// `Parts<T>` → `T`.
fn parts_item(ty: &Type) -> Option<Type> {
    let seg = last_segment(ty)?;
    let args = type_args(seg);
    (seg.ident == "Parts" && args.len() == 1).then(|| args[0].clone())
}

fn is_sock_ref(ty: &Type) -> bool {
    match ty {
        Type::Reference(r) if r.mutability.is_none() => last_segment(&r.elem)
            .is_some_and(|s| s.ident == "Sock" && matches!(s.arguments, PathArguments::None)),
        _ => false,
    }
}

fn is_unit(ty: &Type) -> bool {
    matches!(ty, Type::Tuple(t) if t.elems.is_empty())
}

fn parse_method(f: &mut TraitItemFn, args: &Args) -> syn::Result<Method> {
    let sig = &f.sig;
    let ident = sig.ident.clone();
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new(
            sig.generics.span(),
            format!(
                "service method `{ident}` cannot be generic: an operation has one payload type \
                 on the wire, so spell out the types"
            ),
        ));
    }
    if let Some(v) = &sig.variadic {
        return Err(syn::Error::new(
            v.span(),
            "variadic methods cannot be operations",
        ));
    }
    if sig.unsafety.is_some() || sig.constness.is_some() || sig.abi.is_some() {
        return Err(syn::Error::new(
            sig.span(),
            "service methods are plain `async fn` (requests, streams) or `fn` (notifications)",
        ));
    }

    let mut name = None;
    let mut docs = Vec::new();
    let mut kept = Vec::new();
    for a in f.attrs.drain(..) {
        if a.path().is_ident("gotalk") {
            a.parse_nested_meta(|meta| {
                if meta.path.is_ident("name") {
                    let s: LitStr = meta.value()?.parse()?;
                    if s.value().is_empty() || s.value().len() > 4095 {
                        return Err(syn::Error::new(
                            s.span(),
                            "a name on the wire is 1 to 4095 bytes long (the empty name is the \
                             fallback handler's)",
                        ));
                    }
                    name = Some(s.value());
                    Ok(())
                } else {
                    Err(meta
                        .error("unknown argument: #[gotalk(name = \"...\")] renames the operation"))
                }
            })?;
        } else {
            if a.path().is_ident("doc") {
                docs.push(a.clone());
            }
            kept.push(a);
        }
    }
    f.attrs = kept;
    let sig = &f.sig;

    let mut inputs = sig.inputs.iter();
    match inputs.next() {
        Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none() => {}
        Some(other) => {
            return Err(syn::Error::new(
                other.span(),
                format!("service method `{ident}` takes `&self`"),
            ))
        }
        None => {
            return Err(syn::Error::new(
                sig.span(),
                format!("service method `{ident}` takes `&self`"),
            ))
        }
    }
    let mut sock = false;
    let mut payload = Vec::new();
    for (i, arg) in inputs.enumerate() {
        let FnArg::Typed(pt) = arg else { continue };
        if i == 0 && is_sock_ref(&pt.ty) {
            sock = true;
        } else if is_sock_ref(&pt.ty) {
            return Err(syn::Error::new(
                pt.ty.span(),
                "the calling connection (`&Sock`) goes first, right after `&self`",
            ));
        } else {
            payload.push(pt);
        }
    }
    if payload.len() > 1 {
        return Err(syn::Error::new(
            payload[1].span(),
            format!(
                "service method `{ident}` takes at most one payload argument (a request carries \
                 one JSON value): put the values in a struct"
            ),
        ));
    }
    let input = match payload.first() {
        None => Input::None,
        Some(pt) => match parts_item(&pt.ty) {
            Some(item) => Input::Stream(item),
            None => Input::Value((*pt.ty).clone()),
        },
    };

    let is_async = sig.asyncness.is_some();
    let output = match &sig.output {
        ReturnType::Default if !is_async => Output::Notification,
        ReturnType::Type(_, t) if !is_async && is_unit(t) => Output::Notification,
        ReturnType::Default => {
            return Err(syn::Error::new(
                sig.span(),
                format!(
                    "`async fn {ident}` returns nothing: write `fn {ident}` (not async) for a \
                     notification, or give the request a result (`-> ()` or `-> Result<(), \
                     HandlerError>`)"
                ),
            ))
        }
        ReturnType::Type(_, t) if !is_async => {
            return Err(syn::Error::new(
                t.span(),
                format!(
                    "a method with a result is a request: write `async fn {ident}` (a method \
                     without one is a notification)"
                ),
            ))
        }
        ReturnType::Type(_, t) => {
            if let Some(item) = parts_item(t) {
                Output::Stream(item)
            } else {
                match last_segment(t) {
                    Some(seg) if seg.ident == "Result" => {
                        let targs = type_args(seg);
                        match targs.as_slice() {
                            [ok, err] => {
                                if parts_item(ok).is_some() {
                                    return Err(syn::Error::new(
                                        ok.span(),
                                        "a stream of results is not wrapped in a `Result`: return \
                                         `Parts<T>` and end it with an `Err` item to fail",
                                    ));
                                }
                                let is_handler_error =
                                    last_segment(err).is_some_and(|s| s.ident == "HandlerError");
                                if is_handler_error {
                                    Output::Result((*ok).clone())
                                } else {
                                    Output::Typed((*ok).clone(), Box::new((*err).clone()))
                                }
                            }
                            _ => {
                                return Err(syn::Error::new(
                                    t.span(),
                                    "spell out the error type: `Result<T, HandlerError>` for \
                                     errors as messages, or `Result<T, E>` with a serde type `E` \
                                     for typed errors",
                                ))
                            }
                        }
                    }
                    _ => Output::Value((**t).clone()),
                }
            }
        }
    };
    if matches!(output, Output::Notification) && matches!(input, Input::Stream(_)) {
        return Err(syn::Error::new(
            sig.span(),
            format!("notification `{ident}` cannot take a stream of parts"),
        ));
    }
    let name = name.unwrap_or_else(|| wire_name(&ident.to_string(), args));
    Ok(Method {
        ident,
        name,
        docs,
        sock,
        input,
        output,
    })
}

/// `async fn m(..) -> R` becomes `fn m(..) -> impl Future<Output = R> + Send`, so that the
/// server can run the methods on any tokio worker; implementations still write `async fn`.
fn rewrite_signature(f: &mut TraitItemFn) {
    if f.sig.asyncness.take().is_none() {
        return;
    }
    let ret: Type = match &f.sig.output {
        ReturnType::Type(_, t) => (**t).clone(),
        ReturnType::Default => parse_quote!(()),
    };
    f.sig.output = parse_quote! {
        -> impl ::core::future::Future<Output = #ret> + ::core::marker::Send
    };
    if let Some(body) = &f.default {
        f.default = Some(parse_quote!({ async move #body }));
    }
}

fn client(item: &ItemTrait, methods: &[Method]) -> TokenStream2 {
    let vis = &item.vis;
    let trait_name = &item.ident;
    let name = format_ident!("{}Client", trait_name);
    let doc = format!(
        "Calls the methods of service [`{trait_name}`] on a peer, through a [`Caller`](::gotalk::service::Caller) \
         (a `Sock`, a `&Sock`, an `Arc<Sock>`, ...). Generated by `#[gotalk::service]`."
    );
    let fns = methods.iter().map(|m| {
        // Spanned at the method: a payload type that is not a serde type is reported there
        // (and at the type itself, by `payload_checks`), not at the attribute.
        let private = quote_spanned!(m.ident.span()=> ::gotalk::service::__private);
        let ident = &m.ident;
        let wire = &m.name;
        let docs = &m.docs;
        let (param, value) = match &m.input {
            Input::None => (quote!(), quote!(&())),
            Input::Value(t) => (quote!(, input: #t), quote!(&input)),
            Input::Stream(t) => (quote!(, input: ::gotalk::service::Parts<#t>), quote!(input)),
        };
        let body = if !m.is_stream() {
            match &m.output {
                Output::Notification => quote! {
                    -> ::gotalk::Result<()> {
                        #private::notify(&self.caller, #wire, #value).await
                    }
                },
                Output::Value(t) | Output::Result(t) => quote! {
                    -> ::gotalk::Result<#t> {
                        #private::request(&self.caller, #wire, #value).await
                    }
                },
                Output::Typed(t, e) => quote! {
                    -> ::core::result::Result<#t, ::gotalk::service::CallError<#e>> {
                        #private::request_typed(&self.caller, #wire, #value).await
                    }
                },
                Output::Stream(_) => unreachable!("a stream method"),
            }
        } else {
            let start = quote! {
                #[allow(unused_mut)]
                let (mut tx, rx) = ::gotalk::service::Caller::stream(&self.caller, #wire).await?;
            };
            let send_single = match &m.input {
                Input::Stream(_) => quote!(),
                _ => quote!(#private::send_one(&mut tx, #value).await?;),
            };
            let results = match &m.input {
                Input::Stream(_) => quote!(#private::send_parts_and_receive(tx, input, rx)),
                _ => quote!(#private::receive_parts(rx)),
            };
            match &m.output {
                Output::Stream(t) => quote! {
                    -> ::gotalk::Result<::gotalk::service::Parts<#t>> {
                        #start
                        #send_single
                        ::core::result::Result::Ok(#results)
                    }
                },
                Output::Value(t) | Output::Result(t) => quote! {
                    -> ::gotalk::Result<#t> {
                        #start
                        #send_single
                        #private::single_result(#results).await
                    }
                },
                Output::Typed(t, e) => quote! {
                    -> ::core::result::Result<#t, ::gotalk::service::CallError<#e>> {
                        #start
                        #send_single
                        #private::typed(#private::single_result(#results).await)
                    }
                },
                Output::Notification => unreachable!("a notification does not stream"),
            }
        };
        let what = match (&m.input, &m.output) {
            (_, Output::Notification) => "notification",
            _ if m.is_stream() => "stream request",
            _ => "request",
        };
        let wire_doc = format!("Sends {what} `{wire}`.");
        let spacer = (!docs.is_empty()).then(|| quote!(#[doc = ""]));
        quote! {
            #(#docs)*
            #spacer
            #[doc = #wire_doc]
            pub async fn #ident(&self #param) #body
        }
    });
    quote! {
        #[doc = #doc]
        #[derive(Clone, Debug)]
        #vis struct #name<C = ::gotalk::Sock> {
            caller: C,
        }

        impl<C: ::gotalk::service::Caller> #name<C> {
            /// A client that calls through `caller`.
            pub fn new(caller: C) -> Self {
                Self { caller }
            }

            /// What this client calls through.
            pub fn caller(&self) -> &C {
                &self.caller
            }

            #(#fns)*
        }
    }
}

fn server(item: &ItemTrait, methods: &[Method]) -> TokenStream2 {
    let vis = &item.vis;
    let trait_name = &item.ident;
    let name = format_ident!("{}Server", trait_name);
    let doc = format!(
        "Serves an implementation of [`{trait_name}`]: `handlers.service({name}::new(service))` \
         registers one handler per method. Generated by `#[gotalk::service]`."
    );
    let registrations = methods.iter().map(|m| {
        let private = quote_spanned!(m.ident.span()=> ::gotalk::service::__private);
        let ident = &m.ident;
        let wire = &m.name;
        let sock_arg = if m.sock { quote!(&sock,) } else { quote!() };
        let input_arg = match &m.input {
            Input::None => quote!(),
            _ => quote!(input),
        };
        let call = quote!(<T as #trait_name>::#ident(&*service, #sock_arg #input_arg));
        if let Output::Notification = m.output {
            let sock_arg = if m.sock { quote!(sock,) } else { quote!() };
            let call = quote!(<T as #trait_name>::#ident(&*service, #sock_arg #input_arg));
            return match &m.input {
                Input::Value(t) => quote! {{
                    let service = self.service.clone();
                    handlers.handle_notification_with_sock(#wire, move |sock: &::gotalk::Sock, input: #t| {
                        let _ = sock;
                        #call
                    });
                }},
                _ => quote! {{
                    let service = self.service.clone();
                    handlers.handle_buffer_notification(#wire, move |sock: &::gotalk::Sock, _, _| {
                        let _ = sock;
                        #call
                    });
                }},
            };
        }
        let reply = |out: TokenStream2| match &m.output {
            Output::Value(_) => quote!(#private::reply(&#out)),
            Output::Result(_) => quote!(#private::reply_result(#out)),
            Output::Typed(_, _) => quote!(#private::reply_typed(#out)),
            Output::Stream(_) | Output::Notification => unreachable!("not a single result"),
        };
        if !m.is_stream() {
            let decode = match &m.input {
                Input::Value(t) => quote!(let input: #t = #private::decode(&payload)?;),
                _ => quote!(let _ = payload;),
            };
            let reply = reply(quote!(out));
            return quote! {{
                let service = self.service.clone();
                handlers.handle_buffer(#wire, move |sock: ::gotalk::Sock, _, payload: ::gotalk::Bytes| {
                    let service = service.clone();
                    async move {
                        let _ = &sock;
                        #decode
                        let out = #call.await;
                        #reply
                    }
                });
            }};
        }
        let input = match &m.input {
            Input::None => quote!(drop(parts_in);),
            Input::Value(t) => quote!(let input: #t = #private::first_part(parts_in).await?;),
            Input::Stream(t) => quote!(let input = #private::receive_input::<#t>(parts_in);),
        };
        let send = match &m.output {
            Output::Stream(_) => quote!(#private::send_results(&mut parts_out, out).await),
            _ => {
                let reply = reply(quote!(out));
                quote!(#private::send_result(&mut parts_out, #reply?).await)
            }
        };
        quote! {{
            let service = self.service.clone();
            handlers.handle_stream(#wire, move |sock: ::gotalk::Sock, _, parts_in, mut parts_out| {
                let service = service.clone();
                async move {
                    let _ = &sock;
                    #input
                    let out = #call.await;
                    #send
                }
            });
        }}
    });
    quote! {
        #[doc = #doc]
        #vis struct #name<T> {
            service: ::std::sync::Arc<T>,
        }

        impl<T> #name<T> {
            /// Serves `service`.
            pub fn new(service: T) -> Self {
                Self { service: ::std::sync::Arc::new(service) }
            }

            /// Serves a shared `service`.
            pub fn from_arc(service: ::std::sync::Arc<T>) -> Self {
                Self { service }
            }
        }

        impl<T> ::core::clone::Clone for #name<T> {
            fn clone(&self) -> Self {
                Self { service: self.service.clone() }
            }
        }

        impl<T> ::core::fmt::Debug for #name<T> {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(::core::stringify!(#name))
            }
        }

        impl<T> ::gotalk::service::Service for #name<T>
        where
            T: #trait_name + ::core::marker::Send + ::core::marker::Sync + 'static,
        {
            fn register(self, handlers: &mut ::gotalk::Handlers) {
                #(#registrations)*
            }
        }
    }
}

fn doc_text(attrs: &[Attribute]) -> String {
    let mut lines = Vec::new();
    for a in attrs {
        if let syn::Meta::NameValue(nv) = &a.meta {
            if let syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) = &nv.value
            {
                let v = s.value();
                lines.push(v.strip_prefix(' ').unwrap_or(&v).to_owned());
            }
        }
    }
    lines.join("\n").trim().to_owned()
}

fn description(item: &ItemTrait, methods: &[Method], args: &Args) -> TokenStream2 {
    let vis = &item.vis;
    let trait_name = &item.ident;
    let trait_str = trait_name.to_string();
    let name = format_ident!("{}Service", trait_name);
    let doc = format!(
        "The description of service [`{trait_name}`]: its name and methods on the wire{}. \
         Generated by `#[gotalk::service]`.",
        if args.typescript {
            ", and its TypeScript"
        } else {
            ""
        }
    );
    let defs = methods.iter().map(|m| {
        let method = m.ident.to_string();
        let wire = &m.name;
        let kind = match (&m.input, &m.output) {
            (_, Output::Notification) => quote!(::gotalk::service::MethodKind::Notification),
            (i, o) if m.is_stream() => {
                let input = matches!(i, Input::Stream(_));
                let output = matches!(o, Output::Stream(_));
                quote!(::gotalk::service::MethodKind::Stream { input: #input, output: #output })
            }
            _ => quote!(::gotalk::service::MethodKind::Request),
        };
        let typed = matches!(m.output, Output::Typed(..));
        quote! {
            ::gotalk::service::MethodDef {
                method: #method,
                name: #wire,
                kind: #kind,
                typed_error: #typed,
            }
        }
    });
    let typescript = args.typescript.then(|| {
        let entries = methods.iter().enumerate().map(|(i, m)| {
            let docs = doc_text(&m.docs);
            let js_name = camel_case(&m.ident.to_string());
            let ty =
                |t: &Type| quote_spanned!(t.span()=> ::core::option::Option::Some(out.ty::<#t>()));
            let input = match &m.input {
                Input::None => quote!(::core::option::Option::None),
                Input::Value(t) if is_unit(t) => quote!(::core::option::Option::None),
                Input::Value(t) | Input::Stream(t) => ty(t),
            };
            let output = match m.output.value_type() {
                Some(t) if !is_unit(t) => ty(t),
                _ => quote!(::core::option::Option::None),
            };
            let error = match &m.output {
                Output::Typed(_, e) => ty(e),
                _ => quote!(::core::option::Option::None),
            };
            quote! {
                let method = ::gotalk::typescript::Method {
                    def: <Self as ::gotalk::service::ServiceDef>::METHODS[#i],
                    js_name: #js_name,
                    docs: #docs,
                    input: #input,
                    output: #output,
                    error: #error,
                };
                out.method(method);
            }
        });
        quote! {
            impl ::gotalk::typescript::TypeScript for #name {
                fn describe(out: &mut ::gotalk::typescript::ServiceTs<'_>) {
                    #(#entries)*
                }
            }
        }
    });
    quote! {
        #[doc = #doc]
        #[derive(Clone, Copy, Debug, Default)]
        #vis struct #name;

        impl ::gotalk::service::ServiceDef for #name {
            const NAME: &'static str = #trait_str;
            const METHODS: &'static [::gotalk::service::MethodDef] = &[#(#defs),*];
        }

        #typescript
    }
}

/// Every payload type must be a serde type: checked by bounds spanned at the user's types, so
/// the error points at the offending argument or result.
fn payload_checks(methods: &[Method]) -> TokenStream2 {
    let mut types: Vec<&Type> = Vec::new();
    for m in methods {
        match &m.input {
            Input::Value(t) | Input::Stream(t) => types.push(t),
            Input::None => {}
        }
        if let Some(t) = m.output.value_type() {
            types.push(t);
        }
        if let Output::Typed(_, e) = &m.output {
            types.push(e);
        }
    }
    let checks = types
        .iter()
        .map(|t| quote_spanned!(t.span()=> ::gotalk::service::__private::assert_payload::<#t>();));
    quote! {
        const _: () = {
            #(#checks)*
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_on_the_wire() {
        assert_eq!(camel_case("get_name"), "getName");
        assert_eq!(camel_case("who"), "who");
        assert_eq!(camel_case("_private_thing"), "privateThing");
        let kebab = Args {
            typescript: false,
            rename_all: Some(("kebab-case".into(), Span::call_site())),
        };
        assert_eq!(wire_name("get_name", &kebab), "get-name");
        assert_eq!(wire_name("get_name", &Args::default()), "get_name");
    }

    #[test]
    fn patterns_are_not_needed_in_trait_arguments() {
        // A trait method may name its argument `_`; the generated code never uses the names.
        let mut f: TraitItemFn = parse_quote!(
            async fn greet(&self, _: GreetIn) -> GreetOut;
        );
        let m = parse_method(&mut f, &Args::default()).unwrap();
        assert!(matches!(m.input, Input::Value(_)));
        assert!(matches!(m.output, Output::Value(_)));
    }
}
