//! What the fuzz targets share: how an input is cut into options, reads and protocol bytes.

/// A fuzz input: option bits, the bytes a client sends, and how they are cut into reads.
pub struct Input<'a> {
    /// Byte 0: each target reads the bits it needs (role, limits, faults).
    pub options: u8,
    chunk_sizes: &'a [u8],
    /// What the client sends.
    pub data: &'a [u8],
}

impl<'a> Input<'a> {
    /// Byte 0 is the options; the low nibble of byte 1 counts the chunk-size bytes that follow;
    /// the rest is data. So a hand-written seed starting with `00` is sent in one read with no
    /// options set, and the text after it stays readable.
    pub fn parse(bytes: &'a [u8]) -> Input<'a> {
        let options = bytes.first().copied().unwrap_or(0);
        let rest = bytes.get(2..).unwrap_or_default();
        let count = bytes
            .get(1)
            .map_or(0, |b| usize::from(b & 0x0f))
            .min(rest.len());
        let (chunk_sizes, data) = rest.split_at(count);
        Input {
            options,
            chunk_sizes,
            data,
        }
    }

    /// Whether option bit `bit` is set.
    pub fn option(&self, bit: u8) -> bool {
        self.options & (1 << bit) != 0
    }

    /// The data cut into reads whose sizes cycle through the chunk-size bytes (each plus one);
    /// one read when there are none.
    pub fn chunks(&self) -> Vec<&'a [u8]> {
        if self.chunk_sizes.is_empty() {
            return vec![self.data];
        }
        let mut chunks = Vec::new();
        let mut rest = self.data;
        for &size in self.chunk_sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (chunk, next) = rest.split_at((usize::from(size) + 1).min(rest.len()));
            chunks.push(chunk);
            rest = next;
        }
        chunks
    }
}
