//! The bytes of streaming reads, in memory both processes map.
//!
//! Through the socket alone a piece was copied twice (into the kernel by the
//! child, out of it by the host) and cost a system call each way: a cold read
//! through the mount ran at 0.70 of the in-process figure. So the host makes a
//! pool of [`SLOTS`] slots of [`SLOT`] bytes (a `memfd`) for each plugin
//! process and hands it over as file descriptor [`POOL_FD`]. The child copies
//! a piece into a free slot and sends only its number; the host reads the
//! bytes where they are (a [`origin_api::read_stream::Piece`] held by the
//! slot) and gives the slot back when that piece is dropped, which the ingest
//! does as soon as it has appended it to its buffer. With every slot taken
//! (a host that holds pieces), pieces go through the socket as before: slower,
//! never stuck.
//!
//! The host only reads the pool, the child only writes slots it has been given
//! back. A plugin can always serve wrong bytes; through the pool it still
//! cannot write anywhere in the host's memory but these slots, and the chunks
//! the host makes of them are named by their hash as always.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, Weak};

/// The bytes of one slot.
pub const SLOT: usize = 1 << 20;
/// Slots in a pool: 32 MiB, shared by every stream of one plugin process.
pub const SLOTS: usize = 32;
/// The pool's descriptor in the plugin process.
pub const POOL_FD: RawFd = 4;

/// A mapping of the pool.
pub struct Pool {
    base: *mut u8,
    len: usize,
}

// SAFETY: the mapping lives as long as the `Pool`; the host only reads slots
// the child has finished writing and announced, the child only writes slots it
// owns (see the module notes), so sharing the pointer between threads is sound.
unsafe impl Send for Pool {}
unsafe impl Sync for Pool {}

impl Pool {
    /// Makes a pool: its mapping here, and the descriptor to hand the child.
    pub fn create() -> io::Result<(Pool, OwnedFd)> {
        let len = SLOT * SLOTS;
        // SAFETY: a valid NUL-terminated name; the result is checked.
        let fd = unsafe { libc::memfd_create(c"musicfs-pieces".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor just made and owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: a valid descriptor.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let pool = Self::map(fd.as_raw_fd(), len, libc::PROT_READ)?;
        Ok((pool, fd))
    }

    /// Maps the pool the host handed this process, to write slots.
    pub fn open_handed() -> io::Result<Pool> {
        // SAFETY: fstat into a zeroed struct on a descriptor number; a wrong
        // number is an error, not undefined behaviour.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(POOL_FD, &mut stat) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let len = stat.st_size as usize;
        if len < SLOT * SLOTS {
            return Err(io::Error::other(format!("a pool of {len} bytes")));
        }
        let pool = Self::map(POOL_FD, SLOT * SLOTS, libc::PROT_READ | libc::PROT_WRITE);
        // The mapping stays; the descriptor is not passed on to anything a
        // plugin runs.
        // SAFETY: our own descriptor, not used after this.
        unsafe { libc::close(POOL_FD) };
        pool
    }

    fn map(fd: RawFd, len: usize, protection: i32) -> io::Result<Pool> {
        // SAFETY: a shared mapping of `len` bytes of a file at least that long;
        // the result is checked.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                protection,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Pool {
            base: base.cast(),
            len,
        })
    }

    /// Copies `bytes` (at most [`SLOT`]) into `slot`. The caller owns the slot.
    pub fn write(&self, slot: u32, bytes: &[u8]) {
        let at = slot as usize * SLOT;
        assert!(bytes.len() <= SLOT && at + SLOT <= self.len);
        // SAFETY: in bounds (checked above); the slot is this caller's alone
        // until the host gives it back.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.base.add(at), bytes.len()) }
    }

    /// The first `len` bytes of `slot`, if that is a slot at all.
    fn bytes(&self, slot: u32, len: usize) -> Option<&[u8]> {
        let at = (slot as usize).checked_mul(SLOT)?;
        if len > SLOT || at + SLOT > self.len {
            return None;
        }
        // SAFETY: in bounds; the child wrote these bytes before announcing the
        // slot and writes it no more until it is given back.
        Some(unsafe { std::slice::from_raw_parts(self.base.add(at), len) })
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, no longer referenced.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// The child's free slots.
pub struct FreeSlots(Mutex<Vec<u32>>);

impl FreeSlots {
    pub fn all() -> Self {
        FreeSlots(Mutex::new((0..SLOTS as u32).rev().collect()))
    }

    pub fn take(&self) -> Option<u32> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    pub fn give_back(&self, slot: u32) {
        if (slot as usize) < SLOTS {
            let mut free = self.0.lock().unwrap_or_else(|p| p.into_inner());
            if !free.contains(&slot) {
                free.push(slot);
            }
        }
    }
}

/// One slot's bytes in the host, given back to the child when dropped.
pub struct HeldSlot {
    pool: Arc<Pool>,
    slot: u32,
    len: usize,
    give_back: Weak<dyn Fn(u32) + Send + Sync>,
}

impl HeldSlot {
    /// The slot `slot` holding `len` bytes, or `None` if the child named a slot
    /// the pool does not have.
    pub fn new(
        pool: Arc<Pool>,
        slot: u32,
        len: usize,
        give_back: Weak<dyn Fn(u32) + Send + Sync>,
    ) -> Option<Self> {
        pool.bytes(slot, len)?;
        Some(HeldSlot {
            pool,
            slot,
            len,
            give_back,
        })
    }
}

impl std::ops::Deref for HeldSlot {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.pool
            .bytes(self.slot, self.len)
            .expect("checked when made")
    }
}

impl Drop for HeldSlot {
    fn drop(&mut self) {
        if let Some(give_back) = self.give_back.upgrade() {
            give_back(self.slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_written_through_one_mapping_reads_back_through_another() {
        let (host, fd) = Pool::create().unwrap();
        let child = Pool::map(
            fd.as_raw_fd(),
            SLOT * SLOTS,
            libc::PROT_READ | libc::PROT_WRITE,
        )
        .unwrap();
        child.write(3, b"bytes of a read");
        let host = Arc::new(host);
        let given_back: Arc<Mutex<Vec<u32>>> = Arc::default();
        let record: Arc<dyn Fn(u32) + Send + Sync> = {
            let given_back = given_back.clone();
            Arc::new(move |slot| given_back.lock().unwrap().push(slot))
        };
        let held = HeldSlot::new(host.clone(), 3, 15, Arc::downgrade(&record)).unwrap();
        assert_eq!(&*held, b"bytes of a read");
        drop(held);
        assert_eq!(*given_back.lock().unwrap(), [3]);
        // A slot past the pool, or longer than a slot, is refused.
        assert!(HeldSlot::new(host.clone(), SLOTS as u32, 1, Arc::downgrade(&record)).is_none());
        assert!(HeldSlot::new(host, 0, SLOT + 1, Arc::downgrade(&record)).is_none());
    }

    #[test]
    fn free_slots_are_taken_once_and_given_back_once() {
        let free = FreeSlots::all();
        let taken: Vec<u32> = std::iter::from_fn(|| free.take()).collect();
        assert_eq!(taken.len(), SLOTS);
        assert!(free.take().is_none());
        free.give_back(5);
        free.give_back(5);
        free.give_back(SLOTS as u32);
        assert_eq!(free.take(), Some(5));
        assert!(free.take().is_none());
    }
}
