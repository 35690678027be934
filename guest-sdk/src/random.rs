//! Secure random bytes (`wasi:random/random`), granted by `[random] secure = true`.
//!
//! Without the grant the first call kills the instance. (Insecure random, which seeds hash maps,
//! is always available and needs no grant.)

/// `len` cryptographically secure random bytes.
pub fn bytes(len: u64) -> Vec<u8> {
    wasip2::random::random::get_random_bytes(len)
}

/// A cryptographically secure random `u64`.
pub fn u64() -> u64 {
    wasip2::random::random::get_random_u64()
}
