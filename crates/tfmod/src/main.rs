//! The command line comes with the S3 store (next step).

fn main() {}
