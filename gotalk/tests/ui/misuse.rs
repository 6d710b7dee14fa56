// Shapes a method cannot take, each with what to write instead.
#[gotalk::service]
trait Misused {
    // Two payloads: a request carries one JSON value.
    async fn add(&self, a: i32, b: i32) -> i32;
    // Async without a result: a notification is a plain fn.
    async fn tell(&self, text: String);
    // A result from a plain fn: requests are async.
    fn ask(&self, text: String) -> String;
    // The error type must be spelled out.
    async fn parse(&self, text: String) -> Result<i32>;
}

type Result<T> = std::result::Result<T, gotalk::HandlerError>;

fn main() {}
