//! The journal's file I/O behind a seam: its segments are files in the
//! directory `journal/` of the store, or, in the crate's power-loss tests,
//! files on a simulated disk (`backend::redb::sim_disk`).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The journal's directory inside the store's directory.
pub(crate) const DIR: &str = "journal";

/// One segment file: read whole at recovery, written at offsets after.
pub(crate) trait SegmentFile: Send + Sync {
    /// Every byte of the file.
    fn read_all(&self) -> io::Result<Vec<u8>>;
    /// Writes `data` at `offset` (`pwrite`), all of it or an error.
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Makes the written data durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
}

/// The set of segment files, named by number.
pub(crate) trait Segments: Send + Sync {
    /// The numbers of the segments present, in no order.
    fn list(&self) -> io::Result<Vec<u64>>;
    /// Opens segment `id`, which exists.
    fn open(&self, id: u64) -> io::Result<Box<dyn SegmentFile>>;
    /// Creates segment `id` holding `head` followed by zeros up to `len`
    /// bytes, every block written, and makes it and its name durable: later
    /// writes inside `len` change no file metadata, so `fdatasync` flushes
    /// data only.
    fn create(&self, id: u64, head: &[u8], len: u64) -> io::Result<Box<dyn SegmentFile>>;
    /// Removes segment `id`.
    fn remove(&self, id: u64) -> io::Result<()>;
    /// Removes every segment, durably.
    fn remove_all(&self) -> io::Result<()>;
    /// The segment's name in messages: its path.
    fn path(&self, id: u64) -> PathBuf;
    /// Bytes the segments take.
    fn size(&self) -> io::Result<u64>;
}

/// Segments as files `journal/segment-N` in a directory.
pub(crate) struct DirSegments {
    dir: PathBuf,
}

impl DirSegments {
    /// The journal of the store in `store_dir`; creates its directory.
    pub fn new(store_dir: &Path) -> io::Result<Self> {
        let dir = store_dir.join(DIR);
        match fs::create_dir(&dir) {
            Ok(()) => sync_dir(store_dir)?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        Ok(DirSegments { dir })
    }
}

/// Makes the names in directory `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

struct DirSegment(File);

impl SegmentFile for DirSegment {
    fn read_all(&self) -> io::Result<Vec<u8>> {
        let len = self.0.metadata()?.len();
        let mut bytes = vec![0; usize::try_from(len).map_err(io::Error::other)?];
        self.0.read_exact_at(&mut bytes, 0)?;
        Ok(bytes)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.0.write_all_at(data, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
}

impl Segments for DirSegments {
    fn list(&self) -> io::Result<Vec<u64>> {
        let mut ids = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            if let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_prefix("segment-"))
                .and_then(|n| n.parse().ok())
            {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    fn open(&self, id: u64) -> io::Result<Box<dyn SegmentFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.path(id))?;
        Ok(Box::new(DirSegment(file)))
    }

    fn create(&self, id: u64, head: &[u8], len: u64) -> io::Result<Box<dyn SegmentFile>> {
        let path = self.path(id);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        // Zeros written, not `fallocate`d: an append into an unwritten
        // extent would change the extent map, metadata that `fdatasync`
        // must then flush with every record.
        let mut block = vec![0u8; 64 << 10];
        let mut at = 0u64;
        while at < len {
            let n = usize::try_from((len - at).min(block.len() as u64)).unwrap_or(block.len());
            if at == 0 {
                let h = head.len().min(n);
                block[..h].copy_from_slice(&head[..h]);
            }
            file.write_all_at(&block[..n], at)?;
            if at == 0 {
                block.fill(0);
            }
            at += n as u64;
        }
        file.sync_all()?;
        sync_dir(&self.dir)?;
        Ok(Box::new(DirSegment(file)))
    }

    fn remove(&self, id: u64) -> io::Result<()> {
        fs::remove_file(self.path(id))
    }

    fn remove_all(&self) -> io::Result<()> {
        for id in self.list()? {
            match fs::remove_file(self.path(id)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        sync_dir(&self.dir)
    }

    fn path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("segment-{id}"))
    }

    fn size(&self) -> io::Result<u64> {
        let mut total = 0;
        for id in self.list()? {
            total += fs::metadata(self.path(id))?.len();
        }
        Ok(total)
    }
}
