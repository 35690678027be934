//! Tests of `keys`.

use super::*;

fn signed(dir: &Path, domain: Domain, bytes: &[u8], key: &SecretKey) -> PathBuf {
    let path = dir.join(if domain == Domain::Agent {
        "a.wasm"
    } else {
        "p.toml"
    });
    std::fs::write(&path, bytes).unwrap();
    key.sign(domain, bytes).write_beside(&path).unwrap();
    path
}

#[test]
fn keygen_writes_a_private_key_and_a_one_line_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = SecretKey::generate().unwrap();
    let (secret, public) = key.write(&dir.path().join("alice")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let line = std::fs::read_to_string(&public).unwrap();
    assert_eq!(line.lines().count(), 1);
    assert_eq!(PublicKey::parse(&line).unwrap(), key.public());
    assert_eq!(SecretKey::read(&secret).unwrap().public(), key.public());
    assert!(
        key.write(&dir.path().join("alice")).is_err(),
        "never overwrites a key"
    );
}

#[test]
fn every_refusal_says_which() {
    let dir = tempfile::tempdir().unwrap();
    let alice = SecretKey::generate().unwrap();
    let mallory = SecretKey::generate().unwrap();
    let bytes = b"\0asm component bytes".to_vec();
    let path = signed(dir.path(), Domain::Agent, &bytes, &alice);
    let config = HostConfig::default();
    let trusted = [alice.public()];
    assert_eq!(
        verify(Domain::Agent, &path, &bytes, &trusted, &config).unwrap(),
        alice.public()
    );

    // Tampered: a changed byte, an appended section, a truncation.
    for changed in [
        {
            let mut b = bytes.clone();
            b[3] ^= 1;
            b
        },
        {
            let mut b = bytes.clone();
            b.extend_from_slice(b"\0custom");
            b
        },
        bytes[..bytes.len() - 1].to_vec(),
    ] {
        assert!(matches!(
            verify(Domain::Agent, &path, &changed, &trusted, &config),
            Err(IdentityError::Tampered { .. })
        ));
    }
    // Another key.
    assert!(matches!(
        verify(Domain::Agent, &path, &bytes, &[mallory.public()], &config),
        Err(IdentityError::Untrusted { .. })
    ));
    // Revoked.
    let revoking = HostConfig {
        revoked: vec![alice.public()],
        ..HostConfig::default()
    };
    assert!(matches!(
        verify(Domain::Agent, &path, &bytes, &trusted, &revoking),
        Err(IdentityError::Revoked { .. })
    ));
    // A policy signature is not an agent signature.
    let policy = signed(dir.path(), Domain::Policy, &bytes, &alice);
    assert!(matches!(
        verify(Domain::Agent, &policy, &bytes, &trusted, &config),
        Err(IdentityError::WrongKind { .. })
    ));
    // Forged: the right digest, a signature by someone else under alice's name.
    let mut forged = mallory.sign(Domain::Agent, &bytes);
    forged.key = alice.public().to_string();
    forged.write_beside(&path).unwrap();
    assert!(matches!(
        verify(Domain::Agent, &path, &bytes, &trusted, &config),
        Err(IdentityError::BadSignature { .. })
    ));
    // Malformed and missing.
    std::fs::write(signature_path(&path), "not toml [").unwrap();
    assert!(matches!(
        verify(Domain::Agent, &path, &bytes, &trusted, &config),
        Err(IdentityError::Malformed { .. })
    ));
    std::fs::remove_file(signature_path(&path)).unwrap();
    assert!(matches!(
        verify(Domain::Agent, &path, &bytes, &trusted, &config),
        Err(IdentityError::Unsigned { .. })
    ));
}

/// Key and signature files are read with a bound: one that never ends (`/dev/zero`, a
/// symlink to it) is refused at the limit, naming the file and the limit.
#[cfg(unix)]
#[test]
fn key_and_signature_reads_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("zero.key");
    std::os::unix::fs::symlink("/dev/zero", &key).unwrap();
    let e = SecretKey::read(&key).unwrap_err().to_string();
    assert!(e.contains("over the 4 KiB limit for a key file"), "{e}");
    // The deny twin's allow: a key file within the limit reads.
    let alice = SecretKey::generate().unwrap();
    let (secret, _) = alice.write(&dir.path().join("alice")).unwrap();
    assert_eq!(SecretKey::read(&secret).unwrap().public(), alice.public());

    let artifact = dir.path().join("a.wasm");
    std::fs::write(&artifact, b"bytes").unwrap();
    std::os::unix::fs::symlink("/dev/zero", signature_path(&artifact)).unwrap();
    let e = verify(
        Domain::Agent,
        &artifact,
        b"bytes",
        &[alice.public()],
        &HostConfig::default(),
    )
    .unwrap_err();
    assert!(matches!(e, IdentityError::Malformed { .. }), "{e}");
    assert!(e.to_string().contains("64 KiB limit"), "{e}");
}
