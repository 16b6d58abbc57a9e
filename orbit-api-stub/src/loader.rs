//! Loads extension libraries with libloading, after checking their ABI declaration.
//!
//! A library is opened once per process and never closed: glibc keeps Rust `cdylib`s mapped
//! after `dlclose` anyway (thread-local destructors pin them), and unmapping code that a runtime
//! thread might still return into would be unsound. Loading the same path again reuses it.

use std::collections::HashMap;
use std::ffi::{CStr, c_char};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use libloading::Library;

use crate::OrbitExtension;
use crate::abi::{ABI_SYMBOL, API_VERSION, ExtensionDeclaration, RUSTC_VERSION, STUB_VERSION};

/// Why a library could not be loaded as an extension. Every variant names the library.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The library file does not exist or cannot be reached.
    #[error("extension library {path} not found: {source}")]
    NotFound {
        /// The library as configured.
        path: PathBuf,
        /// Why it could not be resolved.
        source: std::io::Error,
    },
    /// The file could not be opened as a shared library.
    #[error("cannot load extension library {path}: {source}")]
    Open {
        /// The library.
        path: PathBuf,
        /// What the dynamic loader said.
        source: libloading::Error,
    },
    /// The library has no ABI declaration: not an Orbit extension, or built without
    /// `declare_extension!`.
    #[error(
        "{path} is not an Orbit extension: symbol `{symbol}` not found \
         (was it built with orbit_api_stub::declare_extension!?)"
    )]
    MissingSymbol {
        /// The library.
        path: PathBuf,
        /// The symbol that was looked for.
        symbol: &'static str,
    },
    /// The declaration does not match this host.
    #[error(
        "extension {path} was built for a different host: {what} expected {expected:?}, found {found:?}; \
         rebuild the extension and the host from the same toolchain and orbit-api-stub version"
    )]
    Mismatch {
        /// The library.
        path: PathBuf,
        /// Which field differs: `API version`, `rustc version` or `orbit-api-stub version`.
        what: &'static str,
        /// This host's value.
        expected: String,
        /// The library's value.
        found: String,
    },
    /// The library's constructor panicked.
    #[error("extension {path} panicked while being constructed")]
    ConstructorPanicked {
        /// The library.
        path: PathBuf,
    },
}

/// An extension instance together with the library its code lives in.
pub struct LoadedExtension {
    extension: Box<dyn OrbitExtension>,
    path: PathBuf,
}

impl LoadedExtension {
    /// The library this extension came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The extension itself.
    pub fn extension(&self) -> &dyn OrbitExtension {
        self.extension.as_ref()
    }
}

impl fmt::Debug for LoadedExtension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedExtension")
            .field("name", &self.extension.name())
            .field("version", &self.extension.version())
            .field("path", &self.path)
            .finish()
    }
}

/// Libraries opened so far, by canonical path; leaked on purpose (see the module docs).
fn libraries() -> &'static Mutex<HashMap<PathBuf, &'static Library>> {
    static LIBRARIES: OnceLock<Mutex<HashMap<PathBuf, &'static Library>>> = OnceLock::new();
    LIBRARIES.get_or_init(Default::default)
}

/// Opens `path` (once per process), checks its declaration and constructs the extension.
pub fn load_extension(path: &Path) -> Result<LoadedExtension, LoadError> {
    let path = path.canonicalize().map_err(|source| LoadError::NotFound {
        path: path.to_owned(),
        source,
    })?;
    let library = open_once(&path)?;

    // SAFETY: the symbol is a static of type `ExtensionDeclaration`, as `declare_extension!`
    // exports it; only its leading `repr(C)` fields are read before the versions are checked.
    let declaration: &'static ExtensionDeclaration = unsafe {
        let symbol = library
            .get::<*const ExtensionDeclaration>(ABI_SYMBOL.as_bytes())
            .map_err(|_| LoadError::MissingSymbol {
                path: path.clone(),
                symbol: ABI_SYMBOL,
            })?;
        &**symbol
    };
    check_declaration(&path, declaration)?;

    // SAFETY: the declaration matched this host's API, compiler and stub version, so `create`
    // returns a `Box<Box<dyn OrbitExtension>>` with the same layout as ours, or null.
    let extension = unsafe {
        let raw = (declaration.create)();
        if raw.is_null() {
            return Err(LoadError::ConstructorPanicked { path });
        }
        *Box::from_raw(raw as *mut Box<dyn OrbitExtension>)
    };
    Ok(LoadedExtension { extension, path })
}

fn open_once(path: &Path) -> Result<&'static Library, LoadError> {
    let mut libraries = libraries().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(library) = libraries.get(path) {
        return Ok(library);
    }
    // SAFETY: loading runs the library's initialisers; an extension library is trusted code
    // named by the host's own config.
    let library = unsafe { Library::new(path) }.map_err(|source| LoadError::Open {
        path: path.to_owned(),
        source,
    })?;
    let library: &'static Library = Box::leak(Box::new(library));
    libraries.insert(path.to_owned(), library);
    Ok(library)
}

fn check_declaration(path: &Path, decl: &ExtensionDeclaration) -> Result<(), LoadError> {
    let mismatch = |what, expected: &str, found: String| LoadError::Mismatch {
        path: path.to_owned(),
        what,
        expected: expected.to_owned(),
        found,
    };
    if decl.api_version != API_VERSION {
        return Err(mismatch(
            "API version",
            &API_VERSION.to_string(),
            decl.api_version.to_string(),
        ));
    }
    // SAFETY: with a matching API version both pointers are NUL-terminated static strings.
    let (rustc, stub) = unsafe { (c_text(decl.rustc_version), c_text(decl.stub_version)) };
    if rustc != RUSTC_VERSION {
        return Err(mismatch("rustc version", RUSTC_VERSION, rustc));
    }
    if stub != STUB_VERSION {
        return Err(mismatch("orbit-api-stub version", STUB_VERSION, stub));
    }
    Ok(())
}

/// # Safety
/// `ptr` is null or points to a NUL-terminated string.
unsafe fn c_text(ptr: *const c_char) -> String {
    if ptr.is_null() {
        return "<null>".to_owned();
    }
    // SAFETY: guaranteed by the caller.
    unsafe { CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_library_error_names_the_path() {
        let err = load_extension(Path::new("/nonexistent/libnothing.so")).unwrap_err();
        assert!(matches!(err, LoadError::NotFound { .. }), "{err}");
        assert!(
            err.to_string().contains("/nonexistent/libnothing.so"),
            "{err}"
        );
    }

    #[test]
    fn library_without_declaration_is_refused() {
        // libc is a real shared library that is certainly not an Orbit extension.
        let libc = [
            "/lib/x86_64-linux-gnu/libc.so.6",
            "/lib/aarch64-linux-gnu/libc.so.6",
            "/usr/lib/libc.so.6",
        ]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
        .expect("a libc.so.6 on this machine");
        let err = load_extension(libc).unwrap_err();
        assert!(matches!(err, LoadError::MissingSymbol { .. }), "{err}");
        assert!(err.to_string().contains(ABI_SYMBOL), "{err}");
    }

    #[test]
    fn mismatched_api_version_is_refused_with_both_values() {
        unsafe extern "C" fn never() -> *mut std::ffi::c_void {
            unreachable!()
        }
        let decl = ExtensionDeclaration {
            api_version: API_VERSION + 1,
            rustc_version: crate::abi::RUSTC_VERSION_C.as_ptr(),
            stub_version: crate::abi::STUB_VERSION_C.as_ptr(),
            create: never,
        };
        let err = check_declaration(Path::new("/x/libext.so"), &decl).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("API version"), "{text}");
        assert!(text.contains(&API_VERSION.to_string()), "{text}");
        assert!(text.contains(&(API_VERSION + 1).to_string()), "{text}");
    }

    #[test]
    fn mismatched_rustc_version_is_refused() {
        unsafe extern "C" fn never() -> *mut std::ffi::c_void {
            unreachable!()
        }
        let decl = ExtensionDeclaration {
            api_version: API_VERSION,
            rustc_version: c"rustc 0.0.1 (imaginary)".as_ptr(),
            stub_version: crate::abi::STUB_VERSION_C.as_ptr(),
            create: never,
        };
        let err = check_declaration(Path::new("/x/libext.so"), &decl).unwrap_err();
        assert!(err.to_string().contains("rustc 0.0.1 (imaginary)"), "{err}");
    }
}
