//! The SMTP DATA receiver (end-of-data detection, dot-unstuffing, line checks) over a 64 KiB and
//! a 1 MiB message of ordinary text lines, some of them starting with a dot, fed in 16 KiB
//! chunks as reads from a socket deliver them. Throughput is wire bytes per second.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use reference_server::net::dot_stuff;
use reference_server::smtp::data::{DataReceiver, Progress};

const CHUNK: usize = 16 * 1024;
/// The server's defaults: 25 MB messages, 1000-octet lines.
const MAX_SIZE: u64 = 25 * 1024 * 1024;
const LINE_LIMIT: usize = 1000;

/// A message of about `size` octets: a header, then prose lines of 40 to 78 characters; every
/// 25th line starts with a dot (a quoted signature, an ellipsis) and so is dot-stuffed on the
/// wire.
fn message(size: usize) -> Vec<u8> {
    let mut message = b"From: Alice <alice@example.test>\r\n\
To: Bob <bob@example.test>\r\n\
Subject: the quarterly figures\r\n\
Date: Tue, 05 Mar 2024 10:15:00 +0100\r\n\
Message-ID: <20240305101500.4711@example.test>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n"
        .to_vec();
    let words = "the figures for the quarter are in the attached sheet and the totals \
                 match what finance sent last week except for two rows";
    let mut line = 0usize;
    while message.len() < size {
        let width = 40 + (line * 7) % 39;
        if line % 25 == 24 {
            message.push(b'.');
        }
        message.extend_from_slice(&words.as_bytes()[..width]);
        message.extend_from_slice(b"\r\n");
        line += 1;
    }
    message
}

/// Runs the receiver over the wire bytes as the session does and returns the message.
fn receive(wire: &[u8]) -> Vec<u8> {
    let mut receiver = DataReceiver::new(MAX_SIZE, LINE_LIMIT);
    let mut chunks = wire.chunks(CHUNK);
    let last = loop {
        let chunk = chunks.next().expect("end of data before the end of input");
        if let Progress::Done(used) = receiver.feed(black_box(chunk)) {
            break used == chunk.len();
        }
    };
    assert!(last && chunks.next().is_none(), "end of data too early");
    receiver.finish().expect("an acceptable message")
}

fn data_receiver(c: &mut Criterion) {
    let mut group = c.benchmark_group("smtp_data_receiver");
    for (name, size) in [("64KiB", 64 * 1024), ("1MiB", 1024 * 1024)] {
        let message = message(size);
        let mut wire = Vec::new();
        dot_stuff(&mut wire, &message);
        let stuffed = message
            .split(|&b| b == b'\n')
            .filter(|line| line.starts_with(b"."))
            .count();
        assert!(stuffed > size / 60 / 30, "{stuffed} dot-stuffed lines");
        assert_eq!(wire.len(), message.len() + stuffed + b".\r\n".len());
        assert_eq!(receive(&wire), message);
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &wire, |b, wire| {
            b.iter(|| assert_eq!(receive(wire).len(), message.len()));
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = benches::short();
    targets = data_receiver
}
criterion_main!(benches);
