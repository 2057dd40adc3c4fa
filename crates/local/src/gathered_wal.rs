//! A VFS over SQLite's default one that gathers a transaction's appends to the write-ahead log
//! into one write. SQLite writes each log frame as two calls, its 24-byte header and then its
//! page, and a healed batch of 100 commits about 200 frames of 2 KiB pages: about 400 `pwrite`
//! calls on the one connection that every step of the healer waits for. Gathered, they are a
//! handful.
//!
//! # Why this keeps SQLite's guarantees
//! - **Every commit is written before SQLite publishes it.** SQLite publishes a transaction to
//!   other connections (the write-ahead log index in shared memory) only after it has written
//!   the transaction's last frame, the one whose header carries the database size (the commit
//!   mark). The page of that frame is the last write of the commit: the gathered run is written
//!   out before that write returns, and its error, if any, is that write's error, so SQLite rolls
//!   the transaction back as it would have without gathering.
//! - **Order is kept.** Only a write that continues the one before is gathered; any other write
//!   (an overwrite of a frame the transaction wrote earlier, a header's checksum rewritten, the
//!   log's own header after a restart) first writes out what was gathered, then goes straight to
//!   the file. So is every read, sync, truncation, size query and file control, and the close.
//! - **A crash loses only what SQLite could lose.** Frames of a transaction not yet committed are
//!   worthless without their commit frame; SQLite's recovery ignores them whether or not they
//!   reached the file. With `synchronous = NORMAL` the log is not synced at a commit either way.
//! - Only the log is wrapped: the database file, its shared memory and any temporary files are
//!   SQLite's default files, untouched. Files written this way are ordinary SQLite files: other
//!   processes and builds open them with or without this VFS.

use rusqlite::ffi;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::ptr;
use std::sync::OnceLock;

/// The name the VFS is registered under.
const VFS_NAME: &CStr = c"dlq-healer-gathered-wal";

/// A log frame's header: page number, database size (non-zero on a commit frame only), salts,
/// checksums.
const FRAME_HEADER_BYTES: usize = 24;

/// The most that is gathered into one write: SQLite's unix files write at most 128 KiB - 1 bytes
/// in one call (about 63 frames of 2 KiB pages; a batch of 100 commits about 200 frames).
const MAX_GATHERED_BYTES: usize = 0x1ffff;

/// The name of the VFS to open connections with, registering it on first use; `None` if SQLite
/// has no default VFS to wrap (then connections use the default directly).
pub(crate) fn vfs_name() -> Option<&'static str> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let registered = *REGISTERED.get_or_init(|| {
        // SAFETY: the default VFS lives as long as the process; the registered VFS is leaked, so
        // it does too, as SQLite requires.
        unsafe { register() }
    });
    registered.then(|| VFS_NAME.to_str().expect("the VFS name is ASCII"))
}

unsafe fn register() -> bool {
    // SAFETY (whole function): `ffi` calls with valid arguments; see `vfs_name`.
    unsafe {
        if ffi::sqlite3_initialize() != ffi::SQLITE_OK {
            return false;
        }
        let default = ffi::sqlite3_vfs_find(ptr::null());
        if default.is_null() {
            return false;
        }
        let Some(wrapper) = wrapper_of(default) else {
            return false;
        };
        ffi::sqlite3_vfs_register(Box::leak(Box::new(wrapper)), 0) == ffi::SQLITE_OK
    }
}

/// What [`wrapper_of`] needs to know of the default VFS.
struct DefaultVfs {
    os_file_bytes: c_int,
    max_pathname: c_int,
    dl_open: bool,
    dl_error: bool,
    dl_sym: bool,
    dl_close: bool,
    get_last_error: bool,
    current_time_int64: bool,
    /// Whether it has each of the methods SQLite calls without checking for them.
    always_called: [bool; 7],
}

/// The VFS over `default`: each of its methods forwards to `default`'s, and is absent where
/// `default`'s is, so that SQLite does without it as it would with `default` (loading extensions,
/// the last error, the time in milliseconds); no forwarder ever finds a method missing. `None`
/// when `default` lacks a method SQLite always calls: connections then use `default` itself.
///
/// # Safety
/// `default` points to a VFS that outlives the one returned.
unsafe fn wrapper_of(default: *mut ffi::sqlite3_vfs) -> Option<ffi::sqlite3_vfs> {
    // SAFETY: the caller's promise. The fields are read one by one, not through a reference to
    // the whole struct, and the one of version 2 only from a VFS of version 2: a VFS of version 1
    // may end before it.
    let d = unsafe {
        DefaultVfs {
            os_file_bytes: (*default).szOsFile,
            max_pathname: (*default).mxPathname,
            dl_open: (*default).xDlOpen.is_some(),
            dl_error: (*default).xDlError.is_some(),
            dl_sym: (*default).xDlSym.is_some(),
            dl_close: (*default).xDlClose.is_some(),
            get_last_error: (*default).xGetLastError.is_some(),
            current_time_int64: (*default).iVersion >= 2 && (*default).xCurrentTimeInt64.is_some(),
            always_called: [
                (*default).xOpen.is_some(),
                (*default).xDelete.is_some(),
                (*default).xAccess.is_some(),
                (*default).xFullPathname.is_some(),
                (*default).xRandomness.is_some(),
                (*default).xSleep.is_some(),
                (*default).xCurrentTime.is_some(),
            ],
        }
    };
    if d.always_called.contains(&false) {
        return None;
    }
    Some(ffi::sqlite3_vfs {
        iVersion: 2,
        szOsFile: (WAL_FILE_BYTES + d.os_file_bytes as usize) as c_int,
        mxPathname: d.max_pathname,
        pNext: ptr::null_mut(),
        zName: VFS_NAME.as_ptr(),
        pAppData: default.cast(),
        xOpen: Some(open),
        xDelete: Some(delete),
        xAccess: Some(access),
        xFullPathname: Some(full_pathname),
        xDlOpen: if d.dl_open { Some(dl_open) } else { None },
        xDlError: if d.dl_error { Some(dl_error) } else { None },
        xDlSym: if d.dl_sym { Some(dl_sym) } else { None },
        xDlClose: if d.dl_close { Some(dl_close) } else { None },
        xRandomness: Some(randomness),
        xSleep: Some(sleep),
        xCurrentTime: Some(current_time),
        xGetLastError: if d.get_last_error {
            Some(get_last_error)
        } else {
            None
        },
        xCurrentTimeInt64: if d.current_time_int64 {
            Some(current_time_int64)
        } else {
            None
        },
        xSetSystemCall: None,
        xGetSystemCall: None,
        xNextSystemCall: None,
    })
}

/// The VFS this one wraps.
unsafe fn default_vfs(vfs: *mut ffi::sqlite3_vfs) -> *mut ffi::sqlite3_vfs {
    // SAFETY: `pAppData` was set to the default VFS at registration.
    unsafe { (*vfs).pAppData.cast() }
}

/// An open write-ahead log: SQLite's `sqlite3_file` (whose methods are [`WAL_METHODS`]) and the
/// gathering state, in the bytes SQLite allocates for the file; the default VFS's own file
/// follows at [`WAL_FILE_BYTES`].
#[repr(C)]
struct WalFile {
    base: ffi::sqlite3_file,
    inner: *mut ffi::sqlite3_file,
    gathered: Vec<u8>,
    /// Where in the file `gathered` goes.
    gathered_at: i64,
    /// Where the last write ended: a write that starts there continues it.
    last_write_end: Option<i64>,
    /// The last write was the header of a commit frame: the next, its page, ends the commit.
    commit_page_next: bool,
}

/// The bytes before the default VFS's file, kept 8-aligned.
const WAL_FILE_BYTES: usize = std::mem::size_of::<WalFile>().next_multiple_of(8);

static WAL_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(wal_close),
    xRead: Some(wal_read),
    xWrite: Some(wal_write),
    xTruncate: Some(wal_truncate),
    xSync: Some(wal_sync),
    xFileSize: Some(wal_file_size),
    xLock: Some(wal_lock),
    xUnlock: Some(wal_unlock),
    xCheckReservedLock: Some(wal_check_reserved_lock),
    xFileControl: Some(wal_file_control),
    xSectorSize: Some(wal_sector_size),
    xDeviceCharacteristics: Some(wal_device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

unsafe extern "C" fn open(
    vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: SQLite hands over `szOsFile` bytes at `file`; the default VFS's file fits at the
    // start of them, or after a `WalFile`.
    unsafe {
        let default = default_vfs(vfs);
        let default_open = (*default)
            .xOpen
            .expect("a VFS without xOpen is not wrapped (`wrapper_of`)");
        if flags & ffi::SQLITE_OPEN_WAL == 0 {
            return default_open(default, name, file, flags, out_flags);
        }
        (*file).pMethods = ptr::null();
        let inner = file
            .cast::<u8>()
            .add(WAL_FILE_BYTES)
            .cast::<ffi::sqlite3_file>();
        let opened = default_open(default, name, inner, flags, out_flags);
        if opened != ffi::SQLITE_OK {
            return opened;
        }
        file.cast::<WalFile>().write(WalFile {
            base: ffi::sqlite3_file {
                pMethods: &WAL_METHODS,
            },
            inner,
            gathered: Vec::new(),
            gathered_at: 0,
            last_write_end: None,
            commit_page_next: false,
        });
        ffi::SQLITE_OK
    }
}

impl WalFile {
    /// # Safety
    /// `file` is a log opened by [`open`] and not yet closed.
    unsafe fn from<'a>(file: *mut ffi::sqlite3_file) -> &'a mut WalFile {
        // SAFETY: see above; SQLite calls a file's methods one at a time.
        unsafe { &mut *file.cast::<WalFile>() }
    }

    fn inner_methods(&self) -> &ffi::sqlite3_io_methods {
        // SAFETY: the default VFS's file is open while this one is.
        unsafe { &*(*self.inner).pMethods }
    }

    /// One write to the default VFS's file.
    fn write_to_file(&self, bytes: &[u8], offset: i64) -> c_int {
        let write = self.inner_methods().xWrite.expect("files are written");
        // SAFETY: the default VFS's `xWrite` on its open file, with a buffer of that length.
        unsafe {
            write(
                self.inner,
                bytes.as_ptr().cast(),
                bytes.len() as c_int,
                offset,
            )
        }
    }

    /// Write out what is gathered; on failure it is dropped, as a failed write would have been.
    fn write_gathered(&mut self) -> c_int {
        if self.gathered.is_empty() {
            return ffi::SQLITE_OK;
        }
        let written = self.write_to_file(&self.gathered, self.gathered_at);
        self.gathered.clear();
        if written != ffi::SQLITE_OK {
            self.forget_last_write();
        }
        written
    }

    /// After a failed write: the next write is gathered only once one goes straight through.
    fn forget_last_write(&mut self) {
        self.last_write_end = None;
        self.commit_page_next = false;
    }

    fn write(&mut self, bytes: &[u8], offset: i64) -> c_int {
        let is_commit_header = bytes.len() == FRAME_HEADER_BYTES && bytes[4..8] != [0, 0, 0, 0];
        let continues = self.last_write_end == Some(offset);
        let ends_commit = continues && self.commit_page_next;
        let full = self.gathered.len() + bytes.len() > MAX_GATHERED_BYTES;
        if !continues || full {
            let written = self.write_gathered();
            if written != ffi::SQLITE_OK {
                return written;
            }
        }
        self.last_write_end = Some(offset + bytes.len() as i64);
        self.commit_page_next = is_commit_header;
        if !continues {
            let written = self.write_to_file(bytes, offset);
            if written != ffi::SQLITE_OK {
                self.forget_last_write();
            }
            return written;
        }
        if self.gathered.is_empty() {
            self.gathered_at = offset;
            self.gathered.reserve(MAX_GATHERED_BYTES);
        }
        self.gathered.extend_from_slice(bytes);
        if ends_commit {
            return self.write_gathered();
        }
        ffi::SQLITE_OK
    }
}

/// Write out what is gathered, then call the default file's method `$method` with `$args`.
macro_rules! after_gathered {
    ($file:expr, $method:ident $(, $arg:expr)*) => {{
        // SAFETY: `$file` is a log opened by `open`; its default file is open too.
        let wal = unsafe { WalFile::from($file) };
        let written = wal.write_gathered();
        if written != ffi::SQLITE_OK {
            return written;
        }
        let method = wal.inner_methods().$method.expect("the default file has this method");
        // SAFETY: the default file's own method, on it, with SQLite's arguments.
        unsafe { method(wal.inner $(, $arg)*) }
    }};
}

/// Call the default file's method `$method` with `$args`.
macro_rules! forward {
    ($file:expr, $method:ident $(, $arg:expr)*) => {{
        // SAFETY: as in `after_gathered`.
        let wal = unsafe { WalFile::from($file) };
        let method = wal.inner_methods().$method.expect("the default file has this method");
        // SAFETY: as in `after_gathered`.
        unsafe { method(wal.inner $(, $arg)*) }
    }};
}

unsafe extern "C" fn wal_close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes a file once, after its last call; the `WalFile` is dropped here.
    unsafe {
        let wal = WalFile::from(file);
        let written = wal.write_gathered();
        let close = wal.inner_methods().xClose.expect("files are closed");
        let closed = close(wal.inner);
        ptr::drop_in_place(file.cast::<WalFile>());
        (*file).pMethods = ptr::null();
        if written != ffi::SQLITE_OK {
            written
        } else {
            closed
        }
    }
}

unsafe extern "C" fn wal_read(
    file: *mut ffi::sqlite3_file,
    buffer: *mut c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    after_gathered!(file, xRead, buffer, amount, offset)
}

unsafe extern "C" fn wal_write(
    file: *mut ffi::sqlite3_file,
    buffer: *const c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: SQLite passes `amount` readable bytes at `buffer`.
    unsafe {
        let bytes = std::slice::from_raw_parts(buffer.cast::<u8>(), amount.max(0) as usize);
        WalFile::from(file).write(bytes, offset)
    }
}

unsafe extern "C" fn wal_truncate(file: *mut ffi::sqlite3_file, size: ffi::sqlite3_int64) -> c_int {
    after_gathered!(file, xTruncate, size)
}

unsafe extern "C" fn wal_sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    after_gathered!(file, xSync, flags)
}

unsafe extern "C" fn wal_file_size(
    file: *mut ffi::sqlite3_file,
    size: *mut ffi::sqlite3_int64,
) -> c_int {
    after_gathered!(file, xFileSize, size)
}

unsafe extern "C" fn wal_lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    forward!(file, xLock, level)
}

unsafe extern "C" fn wal_unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    forward!(file, xUnlock, level)
}

unsafe extern "C" fn wal_check_reserved_lock(
    file: *mut ffi::sqlite3_file,
    reserved: *mut c_int,
) -> c_int {
    forward!(file, xCheckReservedLock, reserved)
}

unsafe extern "C" fn wal_file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    argument: *mut c_void,
) -> c_int {
    after_gathered!(file, xFileControl, op, argument)
}

unsafe extern "C" fn wal_sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    forward!(file, xSectorSize)
}

unsafe extern "C" fn wal_device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    forward!(file, xDeviceCharacteristics)
}

/// Call the default VFS's method `$method` with `$args`.
macro_rules! to_default_vfs {
    ($vfs:expr, $method:ident $(, $arg:expr)*) => {{
        // SAFETY: the default VFS's own method, with SQLite's arguments.
        unsafe {
            let default = default_vfs($vfs);
            let method = (*default)
                .$method
                .expect("a method is forwarded only where the default VFS has it (`wrapper_of`)");
            method(default $(, $arg)*)
        }
    }};
}

unsafe extern "C" fn delete(vfs: *mut ffi::sqlite3_vfs, name: *const c_char, sync: c_int) -> c_int {
    to_default_vfs!(vfs, xDelete, name, sync)
}

unsafe extern "C" fn access(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    flags: c_int,
    out: *mut c_int,
) -> c_int {
    to_default_vfs!(vfs, xAccess, name, flags, out)
}

unsafe extern "C" fn full_pathname(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    size: c_int,
    out: *mut c_char,
) -> c_int {
    to_default_vfs!(vfs, xFullPathname, name, size, out)
}

unsafe extern "C" fn dl_open(vfs: *mut ffi::sqlite3_vfs, name: *const c_char) -> *mut c_void {
    to_default_vfs!(vfs, xDlOpen, name)
}

unsafe extern "C" fn dl_error(vfs: *mut ffi::sqlite3_vfs, size: c_int, out: *mut c_char) {
    to_default_vfs!(vfs, xDlError, size, out)
}

unsafe extern "C" fn dl_sym(
    vfs: *mut ffi::sqlite3_vfs,
    handle: *mut c_void,
    symbol: *const c_char,
) -> Option<unsafe extern "C" fn(*mut ffi::sqlite3_vfs, *mut c_void, *const c_char)> {
    to_default_vfs!(vfs, xDlSym, handle, symbol)
}

unsafe extern "C" fn dl_close(vfs: *mut ffi::sqlite3_vfs, handle: *mut c_void) {
    to_default_vfs!(vfs, xDlClose, handle)
}

unsafe extern "C" fn randomness(
    vfs: *mut ffi::sqlite3_vfs,
    size: c_int,
    out: *mut c_char,
) -> c_int {
    to_default_vfs!(vfs, xRandomness, size, out)
}

unsafe extern "C" fn sleep(vfs: *mut ffi::sqlite3_vfs, microseconds: c_int) -> c_int {
    to_default_vfs!(vfs, xSleep, microseconds)
}

unsafe extern "C" fn current_time(vfs: *mut ffi::sqlite3_vfs, out: *mut f64) -> c_int {
    to_default_vfs!(vfs, xCurrentTime, out)
}

unsafe extern "C" fn get_last_error(
    vfs: *mut ffi::sqlite3_vfs,
    size: c_int,
    out: *mut c_char,
) -> c_int {
    to_default_vfs!(vfs, xGetLastError, size, out)
}

unsafe extern "C" fn current_time_int64(
    vfs: *mut ffi::sqlite3_vfs,
    out: *mut ffi::sqlite3_int64,
) -> c_int {
    to_default_vfs!(vfs, xCurrentTimeInt64, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::{Connection, OpenFlags};
    use std::path::Path;

    fn open_gathered(path: &Path) -> Connection {
        let vfs = vfs_name().expect("the VFS registers");
        let connection =
            Connection::open_with_flags_and_vfs(path, OpenFlags::default(), vfs).unwrap();
        connection
            .execute_batch(
                "PRAGMA page_size = 2048; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
                 PRAGMA wal_autocheckpoint = 0;
                 CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, body BLOB NOT NULL);",
            )
            .unwrap();
        connection
    }

    /// What a process killed right now would leave: the database file and its log, as they are
    /// on disk, opened elsewhere (SQLite recovers the log from its own checksums).
    fn as_left_by_a_crash(path: &Path) -> (tempfile::TempDir, Connection) {
        let copy = tempfile::tempdir().unwrap();
        let name = path.file_name().unwrap().to_str().unwrap();
        // Read and written whole: `std::fs::copy` asks the kernel for more than a file size
        // limit allows.
        for file in [name.to_string(), format!("{name}-wal")] {
            let bytes = std::fs::read(path.with_file_name(&file)).unwrap();
            std::fs::write(copy.path().join(&file), bytes).unwrap();
        }
        let connection = Connection::open(copy.path().join(name)).unwrap();
        (copy, connection)
    }

    fn count_and_sum(connection: &Connection) -> (i64, i64) {
        connection
            .query_row(
                "SELECT count(*), coalesce(sum(length(body)), 0) FROM rows",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap()
    }

    fn assert_intact(connection: &Connection) {
        let check: String = connection
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }

    /// What a crash right now would leave of the database at `path` holds `expected` rows and
    /// bytes, and is intact.
    #[track_caller]
    fn assert_a_crash_leaves(path: &Path, expected: (i64, i64)) {
        let (_copy, crashed) = as_left_by_a_crash(path);
        assert_eq!(count_and_sum(&crashed), expected, "after a crash");
        assert_intact(&crashed);
    }

    fn insert(connection: &Connection, from: i64, rows: i64, bytes: usize) {
        let mut insert = connection
            .prepare_cached("INSERT INTO rows (id, body) VALUES (?1, zeroblob(?2))")
            .unwrap();
        for id in from..from + rows {
            insert.execute(rusqlite::params![id, bytes as i64]).unwrap();
        }
    }

    /// A copy of SQLite's default VFS, to take methods away from.
    fn default_vfs_copy() -> ffi::sqlite3_vfs {
        // SAFETY: SQLite is initialized and has a default VFS (the unix one); its struct is
        // plain data, copied bit for bit.
        unsafe {
            assert_eq!(ffi::sqlite3_initialize(), ffi::SQLITE_OK);
            let default = ffi::sqlite3_vfs_find(ptr::null());
            assert!(!default.is_null());
            ptr::read(default)
        }
    }

    #[test]
    fn the_wrapper_has_a_method_only_where_the_default_vfs_has_it() {
        let mut default = default_vfs_copy();
        // SAFETY: `default` outlives the wrapper, which is never registered.
        let full = unsafe { wrapper_of(&mut default) }.expect("the unix VFS is wrapped");
        assert!(full.xGetLastError.is_some() && full.xCurrentTimeInt64.is_some());
        assert_eq!(full.xDlOpen.is_some(), default.xDlOpen.is_some());

        default.xDlOpen = None;
        default.xDlSym = None;
        default.xGetLastError = None;
        default.xCurrentTimeInt64 = None;
        // SAFETY: as above.
        let wrapper = unsafe { wrapper_of(&mut default) }.expect("those methods are optional");
        assert!(wrapper.xDlOpen.is_none() && wrapper.xDlSym.is_none());
        assert!(wrapper.xGetLastError.is_none() && wrapper.xCurrentTimeInt64.is_none());
        assert!(wrapper.xSleep.is_some() && wrapper.xOpen.is_some());

        let mut old = default_vfs_copy();
        old.iVersion = 1;
        // SAFETY: as above.
        let wrapper = unsafe { wrapper_of(&mut old) }.expect("a version 1 VFS is wrapped");
        assert!(
            wrapper.xCurrentTimeInt64.is_none(),
            "a version 1 VFS has no xCurrentTimeInt64 to forward to"
        );
    }

    #[test]
    fn a_default_vfs_without_a_method_sqlite_always_calls_is_not_wrapped() {
        for take_away in 0..3 {
            let mut default = default_vfs_copy();
            match take_away {
                0 => default.xSleep = None,
                1 => default.xAccess = None,
                _ => default.xOpen = None,
            }
            // SAFETY: `default` outlives the call; nothing is registered.
            assert!(unsafe { wrapper_of(&mut default) }.is_none());
        }
    }

    #[test]
    fn every_commit_is_in_the_log_file_when_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gathered.db");
        let writer = open_gathered(&path);
        let reader = Connection::open(&path).unwrap();
        let mut expected = (0, 0);
        // Small commits, and commits of several gathered writes (a 1,500-byte row fills a
        // 2 KiB page: 300 rows are about 600 KiB of log).
        for (round, (rows, bytes)) in [(1, 10), (3, 1500), (300, 1500), (1, 10), (120, 700)]
            .into_iter()
            .enumerate()
        {
            let tx = writer.unchecked_transaction().unwrap();
            insert(&tx, expected.0, rows, bytes);
            tx.commit().unwrap();
            expected = (expected.0 + rows, expected.1 + rows * bytes as i64);
            assert_eq!(
                count_and_sum(&reader),
                expected,
                "another connection, round {round}"
            );
            assert_a_crash_leaves(&path, expected);
        }
    }

    #[test]
    fn a_transaction_that_spills_and_rewrites_its_frames_commits_intact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spilled.db");
        let writer = open_gathered(&path);
        insert(&writer, 0, 50, 100);
        // A cache of 10 pages spills the transaction's pages to the log before it commits; the
        // pages changed again afterwards are overwritten in place, and SQLite rewrites the
        // checksums of the frames after them when it commits.
        writer.execute_batch("PRAGMA cache_size = 10").unwrap();
        let tx = writer.unchecked_transaction().unwrap();
        insert(&tx, 1000, 400, 900);
        tx.execute("UPDATE rows SET body = zeroblob(300) WHERE id < 1200", [])
            .unwrap();
        tx.commit().unwrap();
        let expected = (450, 250 * 300 + 200 * 900);
        assert_eq!(count_and_sum(&writer), expected);
        assert_a_crash_leaves(&path, expected);
    }

    #[test]
    fn a_transaction_reads_back_the_pages_it_spilled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("read-back.db");
        let writer = open_gathered(&path);
        writer.execute_batch("PRAGMA cache_size = 10").unwrap();
        let tx = writer.unchecked_transaction().unwrap();
        // About 30 pages, fewer than one gathered write holds: the spilled ones are still
        // gathered when the query reads them back.
        insert(&tx, 0, 30, 1500);
        assert_eq!(count_and_sum(&tx), (30, 45_000));
        tx.commit().unwrap();
        assert_eq!(count_and_sum(&writer), (30, 45_000));
    }

    #[test]
    fn a_rolled_back_transaction_that_spilled_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rolled-back.db");
        let writer = open_gathered(&path);
        insert(&writer, 0, 20, 100);
        writer.execute_batch("PRAGMA cache_size = 10").unwrap();
        let tx = writer.unchecked_transaction().unwrap();
        insert(&tx, 1000, 300, 900);
        tx.rollback().unwrap();
        // The next transaction writes its frames where the rolled-back one's were.
        let tx = writer.unchecked_transaction().unwrap();
        insert(&tx, 20, 5, 100);
        tx.commit().unwrap();
        let expected = (25, 2500);
        assert_eq!(count_and_sum(&Connection::open(&path).unwrap()), expected);
        assert_a_crash_leaves(&path, expected);
    }

    /// Set in the process that [`a_commit_whose_write_fails_fails_and_loses_no_earlier_commit`]
    /// starts, whose files cannot grow past a limit.
    const WRITE_LIMIT_CHILD: &str = "DLQ_HEALER_GATHERED_WAL_WRITE_LIMIT_CHILD";

    #[test]
    fn a_commit_whose_write_fails_fails_and_loses_no_earlier_commit() {
        if std::env::var_os(WRITE_LIMIT_CHILD).is_some() {
            commit_until_a_write_fails();
            return;
        }
        // The limit is the process's: the test runs in a process of its own.
        let name =
            "gathered_wal::tests::a_commit_whose_write_fails_fails_and_loses_no_earlier_commit";
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--nocapture", "--test-threads", "1"])
            .env(WRITE_LIMIT_CHILD, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.contains("1 passed"), "{stdout}");
    }

    /// Commit 20 KB at a time until the log reaches the file size limit: the commit whose
    /// gathered write fails reports the error and is not visible; every earlier one is.
    fn commit_until_a_write_fails() {
        const LIMIT_BYTES: u64 = 300_000;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("limited.db");
        let writer = open_gathered(&path);
        // SAFETY: plain calls into libc with valid arguments; this process runs this test only.
        unsafe {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: LIMIT_BYTES,
                rlim_max: libc::RLIM_INFINITY,
            };
            assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
        }
        let mut committed = 0;
        let error = loop {
            let tx = writer.unchecked_transaction().unwrap();
            let mut insert = tx
                .prepare("INSERT INTO rows (id, body) VALUES (?1, zeroblob(1500))")
                .unwrap();
            let inserted =
                (committed..committed + 10).try_for_each(|id| insert.execute([id]).map(|_| ()));
            drop(insert);
            match inserted.and_then(|()| tx.commit()) {
                Ok(()) => committed += 10,
                Err(error) => break error,
            }
            assert!(committed < 1000, "the limit never stopped a write");
        };
        assert_eq!(
            error.sqlite_error_code(),
            Some(rusqlite::ErrorCode::SystemIoFailure),
            "{error}"
        );
        assert!(committed >= 50, "only {committed} rows before the limit");
        let expected = (committed, committed * 1500);
        assert_eq!(count_and_sum(&Connection::open(&path).unwrap()), expected);
        assert_eq!(count_and_sum(&writer), expected);
        assert_intact(&writer);
        assert_a_crash_leaves(&path, expected);
    }

    #[test]
    fn the_log_restarts_after_a_checkpoint_and_keeps_every_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("restarted.db");
        let writer = open_gathered(&path);
        let checkpointer = Connection::open(&path).unwrap();
        let mut rows = 0;
        for _ in 0..5 {
            insert(&writer, rows, 40, 1500);
            rows += 40;
            let busy: i64 = checkpointer
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(0))
                .unwrap();
            assert_eq!(busy, 0);
        }
        let expected = (rows, rows * 1500);
        assert_a_crash_leaves(&path, expected);
        drop(writer);
        assert_eq!(count_and_sum(&checkpointer), expected);
    }
}
