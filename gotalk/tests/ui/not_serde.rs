// Every argument and result travels as JSON: a type without serde's traits is refused, and the
// error points at it.
struct Point {
    x: i32,
    y: i32,
}

#[gotalk::service]
trait Shapes {
    async fn area(&self, corner: Point) -> f64;
}

fn main() {
    let _ = Point { x: 1, y: 2 }.x + Point { x: 1, y: 2 }.y;
}
