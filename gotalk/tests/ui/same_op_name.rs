// Two methods that would answer the same operation on the wire.
#[gotalk::service]
trait Greeter {
    async fn greet(&self, name: String) -> String;
    #[gotalk(name = "greet")]
    async fn hello(&self, name: String) -> String;
}

fn main() {}
