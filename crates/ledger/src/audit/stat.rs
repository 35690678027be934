//! What an append asks of the open log before it writes: its link count (is it still the log)
//! and its size (did another process append), without its times.

use std::fs::File;

/// The open `file`'s link count and size, asked without its times: on a filesystem with
/// multigrain timestamps (ext4 since Linux 6.13) a look at a file's change time makes its next
/// write stamp a fine-grained time, which dirties the inode (an ext4 journal handle) at every
/// append — with `File::metadata` that was a fifth of an append's cost.
pub(super) fn links_and_len(file: &File) -> std::io::Result<(u64, u64)> {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{AtFlags, StatxFlags, statx};
        let st = statx(
            file,
            "",
            AtFlags::EMPTY_PATH,
            StatxFlags::NLINK | StatxFlags::SIZE,
        )?;
        Ok((u64::from(st.stx_nlink), st.stx_size))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let open = file.metadata()?;
        #[cfg(unix)]
        let links = std::os::unix::fs::MetadataExt::nlink(&open);
        #[cfg(not(unix))]
        let links = 1;
        Ok((links, open.len()))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::links_and_len;

    #[test]
    fn the_link_count_and_size_follow_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut file = std::fs::File::create(&path).unwrap();
        assert_eq!(links_and_len(&file).unwrap(), (1, 0));
        file.write_all(b"a line\n").unwrap();
        assert_eq!(links_and_len(&file).unwrap(), (1, 7));
        std::fs::remove_file(&path).unwrap();
        assert_eq!(links_and_len(&file).unwrap(), (0, 7));
    }
}
