//! The byte streams `warden mcp` speaks MCP on: its standard input and output, driven by tokio's
//! reactor rather than its blocking thread pool where the descriptors allow it, framed by rmcp's
//! line transport ([`transport`]).
//!
//! `tokio::io::stdin()`/`stdout()` (what `rmcp::transport::stdio()` returns) run every read and
//! write on the blocking pool: a thread hand-off each way per message. Instead each stream is
//! looked at once, at start:
//! - a **pipe** (Python's SDK, most shells) is reopened through `/proc/self/fd` with
//!   `O_NONBLOCK` on an open file description of its own and driven as a tokio pipe, so the
//!   process's own descriptors (and anything that inherits them) stay blocking;
//! - a **stream socket** (Node's `child_process`, which MCP clients written in TypeScript use,
//!   gives a child socketpairs) is duplicated and driven through [`AsyncFd`] with
//!   `MSG_DONTWAIT` on each `recv`/`send`, so no flag changes on the shared socket either;
//! - anything else (a terminal, a regular file, `/dev/null`, a platform without `/proc`) falls
//!   back to tokio's blocking standard streams, as `rmcp::transport::stdio()` does.
//!
//! The read stays bounded as before: rmcp's line transport drops (and logs) a message longer
//! than [`MAX_LINE`] once that much of it is buffered, skips the rest of it unkept, and the
//! connection goes on. No busy polling: every
//! path waits on the reactor or on a blocking read.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use rmcp::RoleServer;
use rmcp::transport::async_rw::AsyncRwTransport;
use rustix::fs::{FileType, Mode, OFlags};
use rustix::net::{RecvFlags, SendFlags, SocketType};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::unix::pipe;

/// The longest message accepted on standard input: rmcp's default, which matches its
/// streamable HTTP client's largest event, so a message acceptable over HTTP is over stdio.
pub const MAX_LINE: usize = rmcp::transport::async_rw::DEFAULT_MAX_LINE_LENGTH;

/// What one standard stream is driven as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// A pipe, reopened non-blocking and driven by the reactor.
    Pipe,
    /// A stream socket, duplicated and driven by the reactor with non-blocking calls.
    Socket,
    /// Tokio's blocking standard stream (its reads and writes on the blocking pool).
    Blocking,
}

/// Standard input as an [`AsyncRead`] (see the module's docs for which way).
#[derive(Debug)]
pub struct Input(InputImp);

#[derive(Debug)]
enum InputImp {
    Pipe(pipe::Receiver),
    Socket(AsyncFd<OwnedFd>),
    Blocking(tokio::io::Stdin),
}

/// Standard output as an [`AsyncWrite`] (see the module's docs for which way).
#[derive(Debug)]
pub struct Output(OutputImp);

#[derive(Debug)]
enum OutputImp {
    Pipe(pipe::Sender),
    Socket(AsyncFd<OwnedFd>),
    Blocking(tokio::io::Stdout),
}

impl Input {
    /// What this input is driven as.
    pub fn channel(&self) -> Channel {
        match self.0 {
            InputImp::Pipe(_) => Channel::Pipe,
            InputImp::Socket(_) => Channel::Socket,
            InputImp::Blocking(_) => Channel::Blocking,
        }
    }
}

impl Output {
    /// What this output is driven as.
    pub fn channel(&self) -> Channel {
        match self.0 {
            OutputImp::Pipe(_) => Channel::Pipe,
            OutputImp::Socket(_) => Channel::Socket,
            OutputImp::Blocking(_) => Channel::Blocking,
        }
    }
}

/// The process's standard input and output, each on the reactor where it can be.
///
/// # Panics
///
/// Outside a tokio runtime with IO enabled (as tokio's pipe and [`AsyncFd`] types do).
pub fn stdio() -> (Input, Output) {
    let input = reactor_input(io::stdin().as_fd())
        .map_or_else(|| Input(InputImp::Blocking(tokio::io::stdin())), Input);
    let output = reactor_output(io::stdout().as_fd())
        .map_or_else(|| Output(OutputImp::Blocking(tokio::io::stdout())), Output);
    (input, output)
}

/// rmcp's line transport over `input` and `output`, refusing lines longer than [`MAX_LINE`].
pub fn transport(input: Input, output: Output) -> AsyncRwTransport<RoleServer, Input, Output> {
    AsyncRwTransport::new_server(input, output).with_max_line_length(MAX_LINE)
}

/// What kind of file `fd` is, if it can be asked.
fn file_type(fd: BorrowedFd<'_>) -> Option<FileType> {
    rustix::fs::fstat(fd)
        .ok()
        .map(|st| FileType::from_raw_mode(st.st_mode))
}

/// A stream socket's own duplicate of `fd`, registered with the reactor for `interest`.
#[allow(unsafe_code)]
fn socket(fd: BorrowedFd<'_>, interest: Interest) -> Option<AsyncFd<OwnedFd>> {
    if rustix::net::sockopt::socket_type(fd).ok()? != SocketType::STREAM {
        return None;
    }
    let owned = fd.try_clone_to_owned().ok()?;
    // SAFETY: the `AsyncFd` owns `owned`, an open descriptor no one else holds: it stays open
    // and names the same file description until the `AsyncFd` is dropped, and `as_raw_fd`
    // always returns it.
    unsafe { AsyncFd::register_with_interest(owned, interest) }.ok()
}

/// `fd` reopened non-blocking on an open file description of its own (Linux's `/proc`).
fn reopen(fd: BorrowedFd<'_>, access: OFlags) -> Option<OwnedFd> {
    use std::os::fd::AsRawFd;
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let flags = access | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    rustix::fs::open(path.as_str(), flags, Mode::empty())
        .ok()
        .filter(|reopened| file_type(reopened.as_fd()) == Some(FileType::Fifo))
}

fn reactor_input(fd: BorrowedFd<'_>) -> Option<InputImp> {
    match file_type(fd)? {
        FileType::Fifo => pipe::Receiver::from_owned_fd(reopen(fd, OFlags::RDONLY)?)
            .ok()
            .map(InputImp::Pipe),
        FileType::Socket => socket(fd, Interest::READABLE).map(InputImp::Socket),
        _ => None,
    }
}

fn reactor_output(fd: BorrowedFd<'_>) -> Option<OutputImp> {
    match file_type(fd)? {
        FileType::Fifo => pipe::Sender::from_owned_fd(reopen(fd, OFlags::WRONLY)?)
            .ok()
            .map(OutputImp::Pipe),
        FileType::Socket => socket(fd, Interest::WRITABLE).map(OutputImp::Socket),
        _ => None,
    }
}

impl AsyncRead for Input {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            InputImp::Pipe(p) => Pin::new(p).poll_read(cx, buf),
            InputImp::Blocking(s) => Pin::new(s).poll_read(cx, buf),
            // No room is no read (a zero-byte `recv` would look like the end of the stream).
            InputImp::Socket(_) if buf.remaining() == 0 => Poll::Ready(Ok(())),
            InputImp::Socket(fd) => loop {
                let mut guard = ready!(fd.poll_read_ready(cx))?;
                let unfilled = buf.initialize_unfilled();
                match guard
                    .try_io(|fd| Ok(rustix::net::recv(fd, &mut *unfilled, RecvFlags::DONTWAIT)?))
                {
                    Ok(read) => {
                        // (bytes read, the message's length): equal on a stream socket.
                        let (n, _) = read?;
                        buf.advance(n);
                        return Poll::Ready(Ok(()));
                    }
                    // Not ready after all: the readiness was cleared, wait again.
                    Err(_would_block) => continue,
                }
            },
        }
    }
}

impl AsyncWrite for Output {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().0 {
            OutputImp::Pipe(p) => Pin::new(p).poll_write(cx, buf),
            OutputImp::Blocking(s) => Pin::new(s).poll_write(cx, buf),
            OutputImp::Socket(fd) => loop {
                let mut guard = ready!(fd.poll_write_ready(cx))?;
                // NOSIGNAL: a client gone is an error here, not a SIGPIPE.
                let flags = SendFlags::DONTWAIT | SendFlags::NOSIGNAL;
                match guard.try_io(|fd| Ok(rustix::net::send(fd, buf, flags)?)) {
                    Ok(written) => return Poll::Ready(written),
                    Err(_would_block) => continue,
                }
            },
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            OutputImp::Pipe(p) => Pin::new(p).poll_flush(cx),
            OutputImp::Blocking(s) => Pin::new(s).poll_flush(cx),
            // Nothing is buffered: every byte `poll_write` took is in the socket.
            OutputImp::Socket(_) => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            OutputImp::Pipe(p) => Pin::new(p).poll_shutdown(cx),
            OutputImp::Blocking(s) => Pin::new(s).poll_shutdown(cx),
            // The socket is shared with the process's own standard output: left open.
            OutputImp::Socket(_) => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests;
