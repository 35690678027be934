//! File streams served on the task's own thread. wasmtime-wasi's file streams hand every
//! non-blocking `read` and `write` to a blocking thread, where the CPU they cost is nobody's: a
//! guest polling a stream in a loop would make the host copy files for it for free. These
//! streams do the same reads and writes (at most [`CHUNK`] bytes each, like wasmtime-wasi's) at
//! the call, where the task's CPU meter sees them, and are therefore always ready.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use wasmtime_wasi::p2::{InputStream, OutputStream, Pollable, StreamError, StreamResult};

/// Most bytes one `read` returns or one `check-write` admits (wasmtime-wasi's own bound).
pub const CHUNK: usize = 64 * 1024;

/// A file read from `position` on.
pub(super) struct FileInput {
    file: Arc<File>,
    position: u64,
    closed: bool,
}

impl FileInput {
    pub fn new(file: Arc<File>, position: u64) -> Self {
        FileInput {
            file,
            position,
            closed: false,
        }
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for FileInput {
    async fn ready(&mut self) {}
}

#[wasmtime_wasi::async_trait]
impl InputStream for FileInput {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        if self.closed {
            return Err(StreamError::Closed);
        }
        if size == 0 {
            return Ok(Bytes::new());
        }
        let mut buf = BytesMut::zeroed(size.min(CHUNK));
        loop {
            match self.file.read_at(&mut buf, self.position) {
                Ok(0) => {
                    self.closed = true;
                    return Err(StreamError::Closed);
                }
                Ok(n) => {
                    buf.truncate(n);
                    self.position += n as u64;
                    return Ok(buf.freeze());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.closed = true;
                    return Err(StreamError::LastOperationFailed(e.into()));
                }
            }
        }
    }
}

/// Where a [`FileOutput`] writes.
#[derive(Debug, Clone, Copy)]
pub(super) enum Mode {
    /// From this offset on.
    At(u64),
    /// At the end of the file, wherever it is at each write.
    Append,
}

/// A file written at an offset or at its end.
pub(super) struct FileOutput {
    file: Arc<File>,
    mode: Mode,
    closed: bool,
}

impl FileOutput {
    pub fn new(file: Arc<File>, mode: Mode) -> Self {
        FileOutput {
            file,
            mode,
            closed: false,
        }
    }

    fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let at = match self.mode {
                Mode::At(p) => p,
                Mode::Append => self.file.metadata()?.len(),
            };
            match self.file.write_at(buf, at) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    buf = &buf[n..];
                    if let Mode::At(p) = &mut self.mode {
                        *p += n as u64;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for FileOutput {
    async fn ready(&mut self) {}
}

#[wasmtime_wasi::async_trait]
impl OutputStream for FileOutput {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        if self.closed {
            return Err(StreamError::Closed);
        }
        if bytes.len() > CHUNK {
            return Err(StreamError::trap("write past check-write's permit"));
        }
        self.write_all(&bytes).map_err(|e| {
            self.closed = true;
            StreamError::LastOperationFailed(e.into())
        })
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        if self.closed {
            return Err(StreamError::Closed);
        }
        Ok(CHUNK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_and_writes_happen_at_the_call() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "hello").unwrap();
        let file = Arc::new(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .unwrap(),
        );
        let mut input = FileInput::new(file.clone(), 1);
        assert_eq!(input.read(3).unwrap(), "ell");
        assert_eq!(input.read(100).unwrap(), "o");
        assert!(matches!(input.read(1), Err(StreamError::Closed)));

        let mut at = FileOutput::new(file.clone(), Mode::At(5));
        assert_eq!(at.check_write().unwrap(), CHUNK);
        at.write(Bytes::from_static(b", w")).unwrap();
        let mut end = FileOutput::new(file, Mode::Append);
        end.write(Bytes::from_static(b"orld")).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "hello, world");
        // A write larger than the permit is the guest's bug, as in wasmtime-wasi.
        assert!(end.write(Bytes::from(vec![0u8; CHUNK + 1])).is_err());
    }
}
