use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

fn nonblocking(fd: BorrowedFd<'_>) -> bool {
    rustix::fs::fcntl_getfl(fd)
        .unwrap()
        .contains(OFlags::NONBLOCK)
}

fn input(fd: BorrowedFd<'_>) -> Input {
    Input(reactor_input(fd).expect("on the reactor"))
}

fn output(fd: BorrowedFd<'_>) -> Output {
    Output(reactor_output(fd).expect("on the reactor"))
}

/// Send a message through `out` and read it back from `inp`.
async fn round_trip(mut out: Output, mut inp: Input) {
    let message = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n";
    out.write_all(message).await.unwrap();
    out.flush().await.unwrap();
    let mut back = vec![0; message.len()];
    inp.read_exact(&mut back).await.unwrap();
    assert_eq!(back, message);
}

#[tokio::test]
async fn a_pipe_is_reopened_on_the_reactor_and_the_original_stays_blocking() {
    let (read, write) = std::io::pipe().unwrap();
    let (inp, out) = (input(read.as_fd()), output(write.as_fd()));
    assert_eq!(
        (inp.channel(), out.channel()),
        (Channel::Pipe, Channel::Pipe)
    );
    assert!(!nonblocking(read.as_fd()) && !nonblocking(write.as_fd()));
    round_trip(out, inp).await;
}

#[tokio::test]
async fn a_socket_is_driven_without_changing_its_flags() {
    let (a, b) = UnixStream::pair().unwrap();
    let (inp, out) = (input(a.as_fd()), output(b.as_fd()));
    assert_eq!(
        (inp.channel(), out.channel()),
        (Channel::Socket, Channel::Socket)
    );
    assert!(!nonblocking(a.as_fd()) && !nonblocking(b.as_fd()));
    round_trip(out, inp).await;
}

#[tokio::test]
async fn a_socket_input_sees_the_end_of_its_stream() {
    let (a, mut b) = UnixStream::pair().unwrap();
    let mut inp = input(a.as_fd());
    std::io::Write::write_all(&mut b, b"last\n").unwrap();
    drop(b);
    let mut all = Vec::new();
    inp.read_to_end(&mut all).await.unwrap();
    assert_eq!(all, b"last\n");
}

#[tokio::test]
async fn a_large_message_crosses_a_full_socket_and_a_full_pipe() {
    // Far more than a socket's or a pipe's buffer: the writer must wait for the reader.
    let message: Vec<u8> = (0..4 << 20).map(|i| b'a' + (i % 26) as u8).collect();
    let (a, b) = UnixStream::pair().unwrap();
    let (p_read, p_write) = std::io::pipe().unwrap();
    for (mut out, mut inp) in [
        (output(b.as_fd()), input(a.as_fd())),
        (output(p_write.as_fd()), input(p_read.as_fd())),
    ] {
        let sent = message.clone();
        let writer = tokio::spawn(async move {
            out.write_all(&sent).await.unwrap();
            out.flush().await.unwrap();
        });
        let mut back = vec![0; message.len()];
        inp.read_exact(&mut back).await.unwrap();
        writer.await.unwrap();
        assert!(back == message);
    }
}

#[tokio::test]
async fn a_file_a_device_and_a_datagram_socket_fall_back_to_blocking_streams() {
    let file = tempfile::tempfile().unwrap();
    let null = std::fs::File::open("/dev/null").unwrap();
    let (dgram, _peer) = std::os::unix::net::UnixDatagram::pair().unwrap();
    for fd in [file.as_fd(), null.as_fd(), dgram.as_fd()] {
        assert!(reactor_input(fd).is_none());
        assert!(reactor_output(fd).is_none());
    }
}
