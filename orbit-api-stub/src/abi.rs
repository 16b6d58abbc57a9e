//! The ABI declaration an extension library exports, and the macro that exports it.
//!
//! Before a host calls anything in a library it reads this declaration, whose first fields are
//! C-compatible, and refuses the library unless the API version, the compiler and this crate's
//! version all match its own: only then is it sound to pass Rust trait objects across.

use std::ffi::{CStr, c_char, c_void};

/// Version of the extension contract. Bumped on any incompatible change to this crate.
pub const API_VERSION: u32 = 1;

/// `rustc --version` of the compiler that built this copy of the crate.
pub const RUSTC_VERSION: &str = env!("ORBIT_RUSTC_VERSION");

/// This crate's version.
pub const STUB_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Name of the exported static that holds the [`ExtensionDeclaration`].
pub const ABI_SYMBOL: &str = "ORBIT_EXTENSION_DECLARATION";

/// NUL-terminated copies of the version strings, for the declaration.
#[doc(hidden)]
pub const RUSTC_VERSION_C: &CStr =
    match CStr::from_bytes_with_nul(concat!(env!("ORBIT_RUSTC_VERSION"), "\0").as_bytes()) {
        Ok(s) => s,
        Err(_) => panic!("rustc version contains a NUL byte"),
    };
#[doc(hidden)]
pub const STUB_VERSION_C: &CStr =
    match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(s) => s,
        Err(_) => panic!("crate version contains a NUL byte"),
    };

/// The static an extension library exports under [`ABI_SYMBOL`].
///
/// `repr(C)` with the API version first, so a host can read it from a library built by any
/// compiler before deciding whether to trust the rest.
#[repr(C)]
pub struct ExtensionDeclaration {
    /// [`API_VERSION`] of the library's copy of this crate.
    pub api_version: u32,
    /// [`RUSTC_VERSION`] of the library, NUL-terminated.
    pub rustc_version: *const c_char,
    /// [`STUB_VERSION`] of the library, NUL-terminated.
    pub stub_version: *const c_char,
    /// Builds the extension. Returns a `Box<Box<dyn OrbitExtension>>` turned into a raw pointer,
    /// or null if construction panicked.
    pub create: unsafe extern "C" fn() -> *mut c_void,
}

// SAFETY: the declaration is immutable and its pointers refer to `'static` string constants.
unsafe impl Sync for ExtensionDeclaration {}

/// Exports an [`ExtensionDeclaration`] for a type implementing
/// [`OrbitExtension`](crate::OrbitExtension), built with the given constructor expression.
///
/// ```ignore
/// orbit_api_stub::declare_extension!(PulsarExtension, PulsarExtension::new);
/// ```
#[macro_export]
macro_rules! declare_extension {
    ($ty:ty, $constructor:path) => {
        #[doc(hidden)]
        #[unsafe(no_mangle)]
        pub static ORBIT_EXTENSION_DECLARATION: $crate::ExtensionDeclaration =
            $crate::ExtensionDeclaration {
                api_version: $crate::API_VERSION,
                rustc_version: $crate::abi::RUSTC_VERSION_C.as_ptr(),
                stub_version: $crate::abi::STUB_VERSION_C.as_ptr(),
                create: __orbit_extension_create,
            };

        #[doc(hidden)]
        unsafe extern "C" fn __orbit_extension_create() -> *mut ::std::ffi::c_void {
            // A panic must not unwind across the C ABI: turn it into a null pointer the host
            // reports as a failed construction.
            match ::std::panic::catch_unwind(|| {
                let ext: ::std::boxed::Box<dyn $crate::OrbitExtension> =
                    ::std::boxed::Box::new(<$ty>::from($constructor()));
                ::std::boxed::Box::into_raw(::std::boxed::Box::new(ext)) as *mut ::std::ffi::c_void
            }) {
                Ok(ptr) => ptr,
                Err(_) => ::std::ptr::null_mut(),
            }
        }
    };
}
