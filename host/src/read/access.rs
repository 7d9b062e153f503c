//! One open file's access pattern: where a sequential reader will read next,
//! and how far a stream may run ahead of it (its window). Pure policy, kept
//! by the file's session.

use crate::cache::fill::MAX_WINDOW;

/// The first fetch of an uncached range after an open; it doubles while the
/// reader stays sequential.
pub const FIRST_WINDOW: u32 = 1 << 20;
/// The window after a seek: a quarter of a MiB, a few seconds of any audio.
/// Far away, a seek costs this and a round trip, not a window. (Not the first
/// window too: a reader from the start goes on far more often than one after
/// a seek, and a small window makes it wait on its stream more often.)
pub const SEEK_WINDOW: u32 = 256 << 10;
/// How far from where a sequential reader should read next a read may land and
/// still count as sequential: the kernel's own read-ahead, spread over several
/// FUSE threads, delivers a sequential reader's requests slightly out of order.
pub const REORDER_SLACK: u64 = 1 << 20;

/// Where a sequential reader of one open file will read next, and its window.
#[derive(Clone, Copy, Debug)]
pub struct Access {
    next_offset: u64,
    window: u32,
}

impl Default for Access {
    fn default() -> Self {
        Access {
            next_offset: 0,
            window: FIRST_WINDOW,
        }
    }
}

/// How one read fits the pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// How far a stream may run ahead of this read.
    pub window: u32,
    /// It goes on where the reader was: read-ahead runs on from its end.
    pub sequential: bool,
    /// Far from where the reader was: its stream asks first for the window
    /// only (`Purpose::Seek`).
    pub seeked: bool,
}

impl Access {
    /// Takes in a read of `size` bytes at `offset`: the window doubles while
    /// the reader stays sequential, and falls back after a seek.
    pub fn observe(&mut self, offset: u64, size: u32) -> Step {
        let end = offset + size as u64;
        let near = offset.abs_diff(self.next_offset) <= REORDER_SLACK;
        let sequential = near && offset != 0;
        if sequential {
            self.window = self.window.saturating_mul(2).min(MAX_WINDOW);
            self.next_offset = self.next_offset.max(end);
        } else {
            if !near {
                self.window = SEEK_WINDOW;
            }
            self.next_offset = end;
        }
        Step {
            window: self.window,
            sequential,
            seeked: !near,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_doubles_while_sequential_and_falls_back_after_a_seek() {
        let mut access = Access::default();
        let first = access.observe(0, 128 << 10);
        assert!(!first.sequential && !first.seeked);
        assert_eq!(first.window, FIRST_WINDOW);
        let mut at = 128 << 10;
        let mut window = FIRST_WINDOW;
        for _ in 0..8 {
            let step = access.observe(at, 128 << 10);
            window = (window * 2).min(MAX_WINDOW);
            assert_eq!(
                step,
                Step {
                    window,
                    sequential: true,
                    seeked: false
                }
            );
            at += 128 << 10;
        }
        assert_eq!(window, MAX_WINDOW);
        let seek = access.observe(200 << 20, 4096);
        assert_eq!(
            seek,
            Step {
                window: SEEK_WINDOW,
                sequential: false,
                seeked: true
            }
        );
        assert_eq!(
            access.observe((200 << 20) + 4096, 4096).window,
            2 * SEEK_WINDOW
        );
    }

    #[test]
    fn reads_a_little_out_of_order_count_as_sequential() {
        let mut access = Access::default();
        access.observe(0, 512 << 10);
        // The kernel's read-ahead over several threads: the third half MiB
        // before the second.
        assert!(access.observe(1 << 20, 512 << 10).sequential);
        assert!(access.observe(512 << 10, 512 << 10).sequential);
        assert!(!access.observe(40 << 20, 512 << 10).sequential);
    }
}
