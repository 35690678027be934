//! The file capability's host side: `wasi:filesystem/types` and `wasi:filesystem/preopens`,
//! implemented by asking the gate first and then delegating to wasmtime-wasi (which confines
//! every access beneath its preopened folder with cap-std). Every method that names a path is
//! checked; methods on an already-open descriptor inherit the check made when it was opened.
//!
//! A writable mount is served from its staging folder through the [`Overlay`]: before a call is
//! judged and delegated, what it names is materialized there from the workspace, a file still
//! shared with the workspace is copied up before it may change, and removals are recorded.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;

use wasmtime::component::{HasData, Resource};
use wasmtime_wasi::filesystem::WasiFilesystemCtxView;
use wasmtime_wasi::p2::bindings::filesystem::types::{HostDescriptor, HostDirectoryEntryStream};
use wasmtime_wasi::p2::bindings::filesystem::{preopens, types};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, FsError, FsResult};

use super::overlay::{Need, Overlay, Staged};
use super::scope::{Access, FsScope, MountPoint};
use crate::gate::{KillReason, KillSwitch, Violation};

/// Per-instance state of the file capability: the bound scope, the guest path of every open
/// descriptor (so that a relative path can be judged against where it starts) and the overlay
/// its writable mounts are staged in.
#[derive(Debug)]
pub struct FsState {
    scope: FsScope,
    paths: HashMap<u32, String>,
    overlay: Option<Arc<Overlay>>,
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

    /// What staging `rel` (in `mount`) takes: the overlay, the folder and the path inside it.
    fn staging_job(&self, mount: &MountPoint, rel: &str) -> Option<StagingJob> {
        let overlay = self.overlay.as_ref().filter(|_| mount.writable)?;
        let folder = overlay.folder_of(&mount.rel)?;
        let inner = rel
            .strip_prefix(mount.rel.as_str())
            .unwrap_or(rel)
            .trim_start_matches('/')
            .to_string();
        Some(StagingJob {
            overlay: overlay.clone(),
            folder,
            inner,
        })
    }

    /// The scope this instance runs with.
    pub fn scope(&self) -> &FsScope {
        &self.scope
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
}

/// A path to stage, owned so that a large listing can run on a blocking thread.
struct StagingJob {
    overlay: Arc<Overlay>,
    folder: usize,
    inner: String,
}

impl StagingJob {
    async fn run(self, need: Need) -> io::Result<Spot> {
        let StagingJob {
            overlay,
            folder,
            inner,
        } = self;
        let staged = if need == Need::Entry {
            // A handful of `lstat`s, like the link check that follows.
            overlay.stage(folder, &inner, need)?
        } else {
            let o = overlay.clone();
            tokio::task::spawn_blocking(move || o.stage(folder, &inner, need))
                .await
                .map_err(io::Error::other)??
        };
        Ok(Spot {
            overlay,
            folder,
            staged,
        })
    }
}

/// Where a guarded path was staged.
struct Spot {
    overlay: Arc<Overlay>,
    folder: usize,
    staged: Staged,
}

impl Spot {
    /// Before the call changes the file: give it its own copy if it is still the workspace's
    /// (the entry the path names, or with `follow` what a link there points at).
    fn copy_up(&self, follow: bool) -> io::Result<()> {
        let path = if follow {
            &self.staged.target
        } else {
            &self.staged.entry
        };
        match path {
            Some(p) => self.overlay.copy_up(self.folder, p),
            None => Ok(()),
        }
    }

    /// After the call removed the entry or renamed it away (or renamed something over it).
    fn removed(&self) {
        if let Some(p) = &self.staged.entry {
            self.overlay.remove(self.folder, p);
        }
    }
}

/// A path the gate allowed.
struct Guarded {
    /// Its guest path.
    guest: String,
    /// Where it was staged (only on a writable mount served through the overlay).
    spot: Option<Spot>,
}

impl Guarded {
    fn copy_up(&self, follow: bool) -> io::Result<()> {
        self.spot.as_ref().map_or(Ok(()), |s| s.copy_up(follow))
    }

    fn removed(&self) {
        if let Some(s) = &self.spot {
            s.removed();
        }
    }
}

impl GatedFsView<'_> {
    fn deny(&self, detail: String) -> FsError {
        FsError::trap(
            self.kill
                .kill(Violation::new(KillReason::OutOfScope, "fs", detail)),
        )
    }

    /// Decide one path-naming operation, staging what it `need`s first.
    ///
    /// Staging comes before the link check so that the check sees what the guest will reach
    /// (a link in the workspace is staged as a link). It only ever stages entries of the mount,
    /// by normalized path, and a refusal below kills the instance before the guest sees any.
    async fn guard(
        &mut self,
        fd: u32,
        path: &str,
        access: Access,
        dir_hint: Option<bool>,
        need: Need,
    ) -> Result<Guarded, FsError> {
        let started = std::time::Instant::now();
        let Some(base) = self.state.paths.get(&fd) else {
            return Err(self.deny(format!(
                "`{path}` named from a descriptor that is not a granted folder"
            )));
        };
        let (rel, mount) = match self.state.scope.resolve(base, path) {
            Ok((rel, mount)) => (rel, mount.clone()),
            Err(why) => return Err(self.deny(why)),
        };
        let spot = match self.state.staging_job(&mount, &rel) {
            Some(job) => Some(job.run(need).await?),
            None => None,
        };
        let scope = &self.state.scope;
        let is_dir = scope
            .check_links(&mount, &rel, access)
            .map_err(|why| self.deny(why))?;
        let is_dir = dir_hint.unwrap_or(is_dir);
        scope
            .decide(access, &rel, is_dir)
            .map_err(|why| self.deny(why))?;
        tracing::trace!(target: "warden::gate", capability = "fs", path = %rel, ?access, "allowed");
        let mode = match access {
            Access::Read => "read",
            Access::Write => "write",
        };
        self.kill
            .record("fs", &format!("{mode} {rel}"), "allowed", started.elapsed());
        Ok(Guarded {
            guest: format!("/{rel}"),
            spot,
        })
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
        self.inner.set_size(fd, size).await
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
        self.inner.read(fd, len, offset).await
    }

    async fn write(&mut self, fd: Fd, buf: Vec<u8>, offset: u64) -> FsResult<u64> {
        self.inner.write(fd, buf, offset).await
    }

    async fn read_directory(&mut self, fd: Fd) -> FsResult<Resource<types::DirectoryEntryStream>> {
        let job = self
            .state
            .paths
            .get(&fd.rep())
            .and_then(|base| self.state.scope.resolve(base, "").ok())
            .and_then(|(rel, mount)| self.state.staging_job(mount, &rel));
        if let Some(job) = job {
            job.run(Need::Listing).await?;
        }
        self.inner.read_directory(fd).await
    }

    async fn sync(&mut self, fd: Fd) -> FsResult<()> {
        self.inner.sync(fd).await
    }

    async fn create_directory_at(&mut self, fd: Fd, path: String) -> FsResult<()> {
        self.guard(fd.rep(), &path, Access::Write, Some(true), Need::Entry)
            .await?;
        self.inner.create_directory_at(fd, path).await
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
        self.guard(fd.rep(), &path, Access::Read, None, Need::Entry)
            .await?;
        self.inner.stat_at(fd, path_flags, path).await
    }

    async fn set_times_at(
        &mut self,
        fd: Fd,
        path_flags: types::PathFlags,
        path: String,
        atim: types::NewTimestamp,
        mtim: types::NewTimestamp,
    ) -> FsResult<()> {
        let target = self
            .guard(fd.rep(), &path, Access::Write, None, Need::Entry)
            .await?;
        target.copy_up(path_flags.contains(types::PathFlags::SYMLINK_FOLLOW))?;
        self.inner
            .set_times_at(fd, path_flags, path, atim, mtim)
            .await
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
            .guard(fd.rep(), &old_path, Access::Write, Some(false), Need::Entry)
            .await?;
        self.guard(
            new_fd.rep(),
            &new_path,
            Access::Write,
            Some(false),
            Need::Entry,
        )
        .await?;
        // The new name must not share the workspace's inode: a write through it would land there.
        source.copy_up(false)?;
        self.inner
            .link_at(fd, old_path_flags, old_path, new_fd, new_path)
            .await
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
        let access = if writes { Access::Write } else { Access::Read };
        let dir_hint = oflags.contains(types::OpenFlags::DIRECTORY).then_some(true);
        let target = self
            .guard(fd.rep(), &path, access, dir_hint, Need::Entry)
            .await?;
        if writes {
            target.copy_up(path_flags.contains(types::PathFlags::SYMLINK_FOLLOW))?;
        }
        let opened = self
            .inner
            .open_at(fd, path_flags, path, oflags, flags)
            .await?;
        self.state.paths.insert(opened.rep(), target.guest);
        Ok(opened)
    }

    fn drop(&mut self, fd: Fd) -> wasmtime::Result<()> {
        self.state.paths.remove(&fd.rep());
        HostDescriptor::drop(&mut self.inner, fd)
    }

    async fn readlink_at(&mut self, fd: Fd, path: String) -> FsResult<String> {
        self.guard(fd.rep(), &path, Access::Read, Some(false), Need::Entry)
            .await?;
        self.inner.readlink_at(fd, path).await
    }

    async fn remove_directory_at(&mut self, fd: Fd, path: String) -> FsResult<()> {
        // Listed first: whether it is empty is a question about the overlay, not the staging folder.
        let target = self
            .guard(fd.rep(), &path, Access::Write, Some(true), Need::Listing)
            .await?;
        self.inner.remove_directory_at(fd, path).await?;
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
            .guard(fd.rep(), &old_path, Access::Write, None, Need::Tree)
            .await?;
        let target = self
            .guard(new_fd.rep(), &new_path, Access::Write, None, Need::Listing)
            .await?;
        self.inner.rename_at(fd, old_path, new_fd, new_path).await?;
        source.removed();
        target.removed();
        Ok(())
    }

    async fn symlink_at(&mut self, fd: Fd, src_path: String, dest_path: String) -> FsResult<()> {
        let link = self
            .guard(
                fd.rep(),
                &dest_path,
                Access::Write,
                Some(false),
                Need::Entry,
            )
            .await?
            .guest;
        // The link's target is resolved from the folder that holds the link.
        let holder = link
            .rsplit_once('/')
            .map_or("/", |(dir, _)| if dir.is_empty() { "/" } else { dir });
        let holder = holder.to_string();
        let (target, _) = self
            .state
            .scope
            .resolve(&holder, &src_path)
            .map_err(|why| self.deny(format!("symlink `{dest_path}` -> `{src_path}`: {why}")))?;
        if !self.state.scope.allows(Access::Read, &target, false)
            && !self.state.scope.allows(Access::Read, &target, true)
        {
            return Err(self.deny(format!(
                "symlink `{dest_path}` -> `{src_path}` points at `{target}`, which the policy does not grant"
            )));
        }
        self.inner.symlink_at(fd, src_path, dest_path).await
    }

    async fn unlink_file_at(&mut self, fd: Fd, path: String) -> FsResult<()> {
        let target = self
            .guard(fd.rep(), &path, Access::Write, Some(false), Need::Entry)
            .await?;
        self.inner.unlink_file_at(fd, path).await?;
        target.removed();
        Ok(())
    }

    fn read_via_stream(&mut self, fd: Fd, offset: u64) -> FsResult<Resource<DynInputStream>> {
        self.inner.read_via_stream(fd, offset)
    }

    fn write_via_stream(&mut self, fd: Fd, offset: u64) -> FsResult<Resource<DynOutputStream>> {
        self.inner.write_via_stream(fd, offset)
    }

    fn append_via_stream(&mut self, fd: Fd) -> FsResult<Resource<DynOutputStream>> {
        self.inner.append_via_stream(fd)
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
        self.guard(fd.rep(), &path, Access::Read, None, Need::Entry)
            .await?;
        self.inner.metadata_hash_at(fd, path_flags, path).await
    }
}

impl HostDirectoryEntryStream for GatedFsView<'_> {
    async fn read_directory_entry(
        &mut self,
        stream: Resource<types::DirectoryEntryStream>,
    ) -> FsResult<Option<types::DirectoryEntry>> {
        self.inner.read_directory_entry(stream).await
    }

    fn drop(&mut self, stream: Resource<types::DirectoryEntryStream>) -> wasmtime::Result<()> {
        HostDirectoryEntryStream::drop(&mut self.inner, stream)
    }
}
