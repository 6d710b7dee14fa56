// A generic method cannot be an operation: the payload type on the wire must be fixed.
#[gotalk::service]
trait Store {
    async fn get<T: serde::de::DeserializeOwned>(&self, key: String) -> T;
}

fn main() {}
