pub fn hello() -> i32 { 1 }
