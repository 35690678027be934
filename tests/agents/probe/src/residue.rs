//! The `plant` and `scan` ops: a secret left in linear memory for whoever runs next in the same
//! instance slot. `plant` writes the secret (the task's `text`, each byte XOR [`MASK`], so the
//! planted bytes are not the task's own text) into static storage, the stack, small heap blocks
//! and one heap block of `bytes` bytes, none of them freed. `scan` reads every byte of linear
//! memory and counts where the secret starts, comparing on the fly so that the scanner never
//! writes the secret itself. A fresh instance must find none; one that planted must find them.
//! Reading every address of linear memory is what a hostile agent would do, and it needs
//! `unsafe`: the only module of the probe that uses it.

#![allow(unsafe_code)]

use std::hint::black_box;

/// What the planted bytes are XORed with.
const MASK: u8 = 0x5a;

/// Static storage (`.bss`): a page of it, filled with copies of the secret.
static mut STATIC: [u8; 4096] = [0; 4096];

fn masked(secret: &str) -> Vec<u8> {
    secret.bytes().map(|b| b ^ MASK).collect()
}

fn fill(buf: &mut [u8], pattern: &[u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = pattern[i % pattern.len()];
    }
}

/// Plant the secret everywhere an agent can write; `big` bytes of it in one heap block.
pub fn plant(secret: &str, big: u64) -> Result<String, String> {
    if secret.len() < 8 {
        return Err("the secret must have at least 8 bytes".into());
    }
    let pattern = masked(secret);
    // SAFETY: the probe is single-threaded and nothing else touches STATIC.
    unsafe { fill(&mut *std::ptr::addr_of_mut!(STATIC), &pattern) };
    let mut stack = [0u8; 8192];
    fill(&mut stack, &pattern);
    black_box(&stack);
    for _ in 0..64 {
        let mut small = vec![0u8; 64];
        fill(&mut small, &pattern);
        std::mem::forget(black_box(small));
    }
    let mut block = vec![0u8; usize::try_from(big).map_err(|e| e.to_string())?];
    fill(&mut block, &pattern);
    std::mem::forget(black_box(block));
    Ok("planted".into())
}

/// How many places in linear memory hold the secret, as `found <n> in <bytes> bytes`.
pub fn scan(secret: &str) -> Result<String, String> {
    if secret.len() < 8 {
        return Err("the secret must have at least 8 bytes".into());
    }
    let want = secret.as_bytes();
    let size = core::arch::wasm32::memory_size::<0>() * 65536;
    let at = |i: usize| -> u8 {
        // SAFETY: every address below the memory's size is readable in wasm; 0 is skipped.
        unsafe { std::ptr::read_volatile(i as *const u8) }
    };
    let mut found = 0u64;
    for i in 1..size.saturating_sub(want.len()) {
        if at(i) ^ MASK == want[0] && (1..want.len()).all(|j| at(i + j) ^ MASK == want[j]) {
            found += 1;
        }
    }
    Ok(format!("found {found} in {size} bytes"))
}
