//! Any bytes given to the policy parser give a policy or a located error, never a panic; and an
//! error always renders.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_policy::Policy;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match Policy::parse("fuzz.toml", &text) {
        Ok(policy) => {
            // A valid policy's rules answer without panicking.
            let _ = policy.fs.mounts();
            let _ = policy.fs.allows_read("a/b");
            let _ = policy.net.allows("example.com", 443);
        }
        Err(e) => {
            let _ = e.render(false);
            assert!(
                e.line <= text.lines().count().max(1) + 1,
                "error line out of range: {e}"
            );
        }
    }
});
