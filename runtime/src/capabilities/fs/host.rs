//! The file capability's host side: `wasi:filesystem/types` and `wasi:filesystem/preopens`,
//! implemented by asking the gate first and then delegating to wasmtime-wasi (which confines
//! every access beneath its preopened folder with cap-std). Every method that names a path is
//! checked; methods on an already-open descriptor inherit the check made when it was opened.

use std::collections::HashMap;

use wasmtime::component::{HasData, Resource};
use wasmtime_wasi::filesystem::WasiFilesystemCtxView;
use wasmtime_wasi::p2::bindings::filesystem::types::{HostDescriptor, HostDirectoryEntryStream};
use wasmtime_wasi::p2::bindings::filesystem::{preopens, types};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, FsError, FsResult};

use super::scope::{Access, FsScope};
use crate::gate::{KillReason, KillSwitch, Violation};

/// Per-instance state of the file capability: the bound scope and the guest path of every open
/// descriptor (so that a relative path can be judged against where it starts).
#[derive(Debug)]
pub struct FsState {
    scope: FsScope,
    paths: HashMap<u32, String>,
}

impl FsState {
    /// State for a fresh instance.
    pub fn new(scope: FsScope) -> Self {
        FsState {
            scope,
            paths: HashMap::new(),
        }
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

impl GatedFsView<'_> {
    fn deny(&self, detail: String) -> FsError {
        FsError::trap(
            self.kill
                .kill(Violation::new(KillReason::OutOfScope, "fs", detail)),
        )
    }

    /// Decide one path-naming operation; returns the guest path of the target.
    fn guard(
        &self,
        fd: u32,
        path: &str,
        access: Access,
        dir_hint: Option<bool>,
    ) -> Result<String, FsError> {
        let Some(base) = self.state.paths.get(&fd) else {
            return Err(self.deny(format!(
                "`{path}` named from a descriptor that is not a granted folder"
            )));
        };
        let scope = &self.state.scope;
        let (rel, mount) = scope.resolve(base, path).map_err(|why| self.deny(why))?;
        let is_dir = scope
            .check_links(mount, &rel, access)
            .map_err(|why| self.deny(why))?;
        let is_dir = dir_hint.unwrap_or(is_dir);
        scope
            .decide(access, &rel, is_dir)
            .map_err(|why| self.deny(why))?;
        tracing::trace!(target: "warden::gate", capability = "fs", path = %rel, ?access, "allowed");
        Ok(format!("/{rel}"))
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
        self.inner.set_times(fd, atim, mtim).await
    }

    async fn read(&mut self, fd: Fd, len: u64, offset: u64) -> FsResult<(Vec<u8>, bool)> {
        self.inner.read(fd, len, offset).await
    }

    async fn write(&mut self, fd: Fd, buf: Vec<u8>, offset: u64) -> FsResult<u64> {
        self.inner.write(fd, buf, offset).await
    }

    async fn read_directory(&mut self, fd: Fd) -> FsResult<Resource<types::DirectoryEntryStream>> {
        self.inner.read_directory(fd).await
    }

    async fn sync(&mut self, fd: Fd) -> FsResult<()> {
        self.inner.sync(fd).await
    }

    async fn create_directory_at(&mut self, fd: Fd, path: String) -> FsResult<()> {
        self.guard(fd.rep(), &path, Access::Write, Some(true))?;
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
        self.guard(fd.rep(), &path, Access::Read, None)?;
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
        self.guard(fd.rep(), &path, Access::Write, None)?;
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
        self.guard(fd.rep(), &old_path, Access::Write, Some(false))?;
        self.guard(new_fd.rep(), &new_path, Access::Write, Some(false))?;
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
        let guest = self.guard(fd.rep(), &path, access, dir_hint)?;
        let opened = self
            .inner
            .open_at(fd, path_flags, path, oflags, flags)
            .await?;
        self.state.paths.insert(opened.rep(), guest);
        Ok(opened)
    }

    fn drop(&mut self, fd: Fd) -> wasmtime::Result<()> {
        self.state.paths.remove(&fd.rep());
        HostDescriptor::drop(&mut self.inner, fd)
    }

    async fn readlink_at(&mut self, fd: Fd, path: String) -> FsResult<String> {
        self.guard(fd.rep(), &path, Access::Read, Some(false))?;
        self.inner.readlink_at(fd, path).await
    }

    async fn remove_directory_at(&mut self, fd: Fd, path: String) -> FsResult<()> {
        self.guard(fd.rep(), &path, Access::Write, Some(true))?;
        self.inner.remove_directory_at(fd, path).await
    }

    async fn rename_at(
        &mut self,
        fd: Fd,
        old_path: String,
        new_fd: Fd,
        new_path: String,
    ) -> FsResult<()> {
        self.guard(fd.rep(), &old_path, Access::Write, None)?;
        self.guard(new_fd.rep(), &new_path, Access::Write, None)?;
        self.inner.rename_at(fd, old_path, new_fd, new_path).await
    }

    async fn symlink_at(&mut self, fd: Fd, src_path: String, dest_path: String) -> FsResult<()> {
        let link = self.guard(fd.rep(), &dest_path, Access::Write, Some(false))?;
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
        self.guard(fd.rep(), &path, Access::Write, Some(false))?;
        self.inner.unlink_file_at(fd, path).await
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
        self.guard(fd.rep(), &path, Access::Read, None)?;
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
