//! The file capability's host side: `wasi:filesystem/types` and `wasi:filesystem/preopens`,
//! implemented by asking the gate first (see [`super::guard`]) and then delegating to
//! wasmtime-wasi (which confines every access beneath its preopened folder with cap-std). Every
//! method that names a path is checked; methods on an already-open descriptor inherit the check
//! made when it was opened. After a call that may have worked for long, the task's CPU limit is
//! checked.
//!
//! A writable mount is served from its staging folder through the [`Overlay`]: before a call is
//! judged and delegated, what it names is materialized there from the workspace, a file still
//! shared with the workspace is copied up before it may change, and removals are recorded.

use std::collections::HashMap;
use std::sync::Arc;

use wasmtime::component::{HasData, Resource};
use wasmtime_wasi::filesystem::WasiFilesystemCtxView;
use wasmtime_wasi::p2::bindings::filesystem::types::{HostDescriptor, HostDirectoryEntryStream};
use wasmtime_wasi::p2::bindings::filesystem::{preopens, types};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, FsError, FsResult};

use super::guard::Use;
use super::overlay::{Need, Overlay};
use super::scope::FsScope;
#[cfg(unix)]
use super::streams::{FileInput, FileOutput, Mode};
use crate::gate::KillSwitch;
use crate::instance::CpuMeter;

/// Per-instance state of the file capability: the bound scope, the guest path of every open
/// descriptor (where it really is, after any symlink it was opened through, so that a relative
/// path can be walked from there) and the overlay its writable mounts are staged in.
#[derive(Debug)]
pub struct FsState {
    pub(super) scope: FsScope,
    pub(super) paths: HashMap<u32, String>,
    pub(super) overlay: Option<Arc<Overlay>>,
}

impl FsState {
    /// State for a fresh instance; without [`FsState::with_overlay`] every mount is served as
    /// preopened.
    pub fn new(scope: FsScope) -> Self {
        FsState {
            scope,
            paths: HashMap::new(),
            overlay: None,
        }
    }

    /// Serve the writable mounts through `overlay`: each must be preopened on its staging
    /// folder (see [`FsScope::restage`]); mounts the overlay has no folder for are served as
    /// preopened.
    pub fn with_overlay(mut self, overlay: Arc<Overlay>) -> Self {
        self.overlay = Some(overlay);
        self
    }

    /// The scope this instance runs with.
    pub fn scope(&self) -> &FsScope {
        &self.scope
    }

    /// After `from` (a workspace path) was renamed to `to`: descriptors open at or below it
    /// are there now, and paths named from them are walked from there.
    fn moved(&mut self, from: &str, to: &str) {
        let (from, to) = (format!("/{from}"), format!("/{to}"));
        for guest in self.paths.values_mut() {
            if let Some(rest) = guest.strip_prefix(&from)
                && (rest.is_empty() || rest.starts_with('/'))
            {
                *guest = format!("{to}{rest}");
            }
        }
    }
}

/// Marker type that links the gated file capability into a `Linker`.
pub struct GatedFs;

impl HasData for GatedFs {
    type Data<'a> = GatedFsView<'a>;
}

/// What the gated host functions operate on: wasmtime-wasi's view plus this capability's state.
pub struct GatedFsView<'a> {
    /// wasmtime-wasi's own filesystem view.
    pub inner: WasiFilesystemCtxView<'a>,
    /// This instance's scope and descriptor paths.
    pub state: &'a mut FsState,
    /// Where violations go.
    pub kill: &'a KillSwitch,
    /// The task's CPU limit, checked after calls that may take long.
    pub(crate) cpu: &'a CpuMeter,
}

impl GatedFsView<'_> {
    /// The open file behind `fd`, if it is a file.
    fn file_of(&self, fd: &Fd) -> Option<Arc<std::fs::File>> {
        match self.inner.table.get(fd) {
            Ok(wasmtime_wasi::filesystem::Descriptor::File(f)) => Some(f.file.clone()),
            _ => None,
        }
    }
}

impl preopens::Host for GatedFsView<'_> {
    fn get_directories(&mut self) -> wasmtime::Result<Vec<(Resource<types::Descriptor>, String)>> {
        let dirs = preopens::Host::get_directories(&mut self.inner)?;
        for (fd, name) in &dirs {
            self.state.paths.insert(fd.rep(), name.clone());
        }
        Ok(dirs)
    }
}

impl types::Host for GatedFsView<'_> {
    fn convert_error_code(&mut self, err: FsError) -> wasmtime::Result<types::ErrorCode> {
        types::Host::convert_error_code(&mut self.inner, err)
    }

    fn filesystem_error_code(
        &mut self,
        err: Resource<wasmtime::Error>,
    ) -> wasmtime::Result<Option<types::ErrorCode>> {
        types::Host::filesystem_error_code(&mut self.inner, err)
    }
}

type Fd = Resource<types::Descriptor>;

impl HostDescriptor for GatedFsView<'_> {
    async fn advise(
        &mut self,
        fd: Fd,
        offset: u64,
        len: u64,
        advice: types::Advice,
    ) -> FsResult<()> {
        self.inner.advise(fd, offset, len, advice).await
    }

    async fn sync_data(&mut self, fd: Fd) -> FsResult<()> {
        self.inner.sync_data(fd).await
    }

    async fn get_flags(&mut self, fd: Fd) -> FsResult<types::DescriptorFlags> {
        self.inner.get_flags(fd).await
    }

    async fn get_type(&mut self, fd: Fd) -> FsResult<types::DescriptorType> {
        self.inner.get_type(fd).await
    }

    async fn set_size(&mut self, fd: Fd, size: u64) -> FsResult<()> {
        let r = self.inner.set_size(fd, size).await;
        self.metered(r)
    }

    async fn set_times(
        &mut self,
        fd: Fd,
        atim: types::NewTimestamp,
        mtim: types::NewTimestamp,
    ) -> FsResult<()> {
        // A descriptor opened for reading on a file still shared with the workspace holds the
        // workspace's inode: copying up cannot redirect it, so its times may not change.
        if let Some(overlay) = &self.state.overlay
            && let Ok(wasmtime_wasi::filesystem::Descriptor::File(f)) = self.inner.table.get(&fd)
            && overlay.is_original(&f.file).unwrap_or(true)
        {
            return Err(types::ErrorCode::NotPermitted.into());
        }
        self.inner.set_times(fd, atim, mtim).await
    }

    async fn read(&mut self, fd: Fd, len: u64, offset: u64) -> FsResult<(Vec<u8>, bool)> {
        let r = self.inner.read(fd, len, offset).await;
        self.metered(r)
    }

    async fn write(&mut self, fd: Fd, buf: Vec<u8>, offset: u64) -> FsResult<u64> {
        let r = self.inner.write(fd, buf, offset).await;
        self.metered(r)
    }

    async fn read_directory(&mut self, fd: Fd) -> FsResult<Resource<types::DirectoryEntryStream>> {
        self.stage_listing(fd.rep()).await?;
        let r = self.inner.read_directory(fd).await;
        self.metered(r)
    }

    async fn sync(&mut self, fd: Fd) -> FsResult<()> {
        self.inner.sync(fd).await
    }

    async fn create_directory_at(&mut self, fd: Fd, path: String) -> FsResult<()> {
        self.guard(fd.rep(), &path, Use::write().dir(true)).await?;
        let r = self.inner.create_directory_at(fd, path).await;
        self.metered(r)
    }

    async fn stat(&mut self, fd: Fd) -> FsResult<types::DescriptorStat> {
        self.inner.stat(fd).await
    }

    async fn stat_at(
        &mut self,
        fd: Fd,
        path_flags: types::PathFlags,
        path: String,
    ) -> FsResult<types::DescriptorStat> {
        self.guard(fd.rep(), &path, Use::read()).await?;
        let r = self.inner.stat_at(fd, path_flags, path).await;
        self.metered(r)
    }

    async fn set_times_at(
        &mut self,
        fd: Fd,
        path_flags: types::PathFlags,
        path: String,
        atim: types::NewTimestamp,
        mtim: types::NewTimestamp,
    ) -> FsResult<()> {
        let target = self.guard(fd.rep(), &path, Use::write()).await?;
        target.copy_up(path_flags.contains(types::PathFlags::SYMLINK_FOLLOW))?;
        let r = self
            .inner
            .set_times_at(fd, path_flags, path, atim, mtim)
            .await;
        self.metered(r)
    }

    async fn link_at(
        &mut self,
        fd: Fd,
        old_path_flags: types::PathFlags,
        old_path: String,
        new_fd: Fd,
        new_path: String,
    ) -> FsResult<()> {
        // A hard link makes the old file writable through the new name: both must be writable.
        let source = self
            .guard(fd.rep(), &old_path, Use::write().dir(false))
            .await?;
        self.guard(new_fd.rep(), &new_path, Use::write().dir(false))
            .await?;
        // The new name must not share the workspace's inode: a write through it would land there.
        source.copy_up(false)?;
        let r = self
            .inner
            .link_at(fd, old_path_flags, old_path, new_fd, new_path)
            .await;
        self.metered(r)
    }

    async fn open_at(
        &mut self,
        fd: Fd,
        path_flags: types::PathFlags,
        path: String,
        oflags: types::OpenFlags,
        flags: types::DescriptorFlags,
    ) -> FsResult<Fd> {
        let writes = flags
            .intersects(types::DescriptorFlags::WRITE | types::DescriptorFlags::MUTATE_DIRECTORY)
            || oflags.intersects(types::OpenFlags::CREATE | types::OpenFlags::TRUNCATE);
        let mut how = if writes { Use::write() } else { Use::read() };
        if oflags.contains(types::OpenFlags::DIRECTORY) {
            how = how.dir(true);
        }
        let target = self.guard(fd.rep(), &path, how).await?;
        if writes {
            target.copy_up(path_flags.contains(types::PathFlags::SYMLINK_FOLLOW))?;
        }
        let opened = self
            .inner
            .open_at(fd, path_flags, path, oflags, flags)
            .await;
        let opened = self.metered(opened)?;
        self.state.paths.insert(opened.rep(), target.guest());
        Ok(opened)
    }

    fn drop(&mut self, fd: Fd) -> wasmtime::Result<()> {
        self.state.paths.remove(&fd.rep());
        HostDescriptor::drop(&mut self.inner, fd)
    }

    async fn readlink_at(&mut self, fd: Fd, path: String) -> FsResult<String> {
        self.guard(fd.rep(), &path, Use::read().dir(false)).await?;
        let r = self.inner.readlink_at(fd, path).await;
        self.metered(r)
    }

    async fn remove_directory_at(&mut self, fd: Fd, path: String) -> FsResult<()> {
        // Listed first: whether it is empty is a question about the overlay, not the staging folder.
        let how = Use::write().dir(true).needs(Need::Listing);
        let target = self.guard(fd.rep(), &path, how).await?;
        let r = self.inner.remove_directory_at(fd, path).await;
        self.metered(r)?;
        target.removed();
        Ok(())
    }

    async fn rename_at(
        &mut self,
        fd: Fd,
        old_path: String,
        new_fd: Fd,
        new_path: String,
    ) -> FsResult<()> {
        // A directory moves with everything in it; one renamed over must be judged empty or not
        // by the overlay.
        let source = self
            .guard(fd.rep(), &old_path, Use::write().needs(Need::Tree))
            .await?;
        let target = self
            .guard(new_fd.rep(), &new_path, Use::write().needs(Need::Listing))
            .await?;
        let r = self.inner.rename_at(fd, old_path, new_fd, new_path).await;
        self.metered(r)?;
        source.removed();
        target.removed();
        let at = |g: &super::guard::Guarded| super::overlay::join(&g.mount.rel, &g.entry);
        self.state.moved(&at(&source), &at(&target));
        Ok(())
    }

    async fn symlink_at(&mut self, fd: Fd, src_path: String, dest_path: String) -> FsResult<()> {
        let link = self
            .guard(fd.rep(), &dest_path, Use::write().dir(false))
            .await?;
        self.check_link_target(&link, &src_path)?;
        let r = self.inner.symlink_at(fd, src_path, dest_path).await;
        self.metered(r)
    }

    async fn unlink_file_at(&mut self, fd: Fd, path: String) -> FsResult<()> {
        let target = self.guard(fd.rep(), &path, Use::write().dir(false)).await?;
        let r = self.inner.unlink_file_at(fd, path).await;
        self.metered(r)?;
        target.removed();
        Ok(())
    }

    // wasmtime-wasi makes the stream (and checks the descriptor's permissions); its work is
    // then done by one served on the task's thread.
    fn read_via_stream(&mut self, fd: Fd, offset: u64) -> FsResult<Resource<DynInputStream>> {
        let file = self.file_of(&fd);
        let stream = self.inner.read_via_stream(fd, offset)?;
        #[cfg(unix)]
        if let Some(file) = file {
            *self.inner.table.get_mut(&stream)? = Box::new(FileInput::new(file, offset));
        }
        Ok(stream)
    }

    fn write_via_stream(&mut self, fd: Fd, offset: u64) -> FsResult<Resource<DynOutputStream>> {
        let file = self.file_of(&fd);
        let stream = self.inner.write_via_stream(fd, offset)?;
        #[cfg(unix)]
        if let Some(file) = file {
            *self.inner.table.get_mut(&stream)? = Box::new(FileOutput::new(file, Mode::At(offset)));
        }
        Ok(stream)
    }

    fn append_via_stream(&mut self, fd: Fd) -> FsResult<Resource<DynOutputStream>> {
        let file = self.file_of(&fd);
        let stream = self.inner.append_via_stream(fd)?;
        #[cfg(unix)]
        if let Some(file) = file {
            *self.inner.table.get_mut(&stream)? = Box::new(FileOutput::new(file, Mode::Append));
        }
        Ok(stream)
    }

    async fn is_same_object(&mut self, a: Fd, b: Fd) -> wasmtime::Result<bool> {
        self.inner.is_same_object(a, b).await
    }

    async fn metadata_hash(&mut self, fd: Fd) -> FsResult<types::MetadataHashValue> {
        self.inner.metadata_hash(fd).await
    }

    async fn metadata_hash_at(
        &mut self,
        fd: Fd,
        path_flags: types::PathFlags,
        path: String,
    ) -> FsResult<types::MetadataHashValue> {
        self.guard(fd.rep(), &path, Use::read()).await?;
        let r = self.inner.metadata_hash_at(fd, path_flags, path).await;
        self.metered(r)
    }
}

impl HostDirectoryEntryStream for GatedFsView<'_> {
    async fn read_directory_entry(
        &mut self,
        stream: Resource<types::DirectoryEntryStream>,
    ) -> FsResult<Option<types::DirectoryEntry>> {
        let r = self.inner.read_directory_entry(stream).await;
        self.metered(r)
    }

    fn drop(&mut self, stream: Resource<types::DirectoryEntryStream>) -> wasmtime::Result<()> {
        HostDirectoryEntryStream::drop(&mut self.inner, stream)
    }
}
