//! Backend selection: CPU (burn's ndarray backend, always available) or CUDA (with the `cuda`
//! cargo feature and an NVIDIA driver). burn 0.21's CUDA backend panics on first use where no
//! driver exists, so CUDA is probed first and a request for it falls back to the CPU with a
//! warning instead.
use std::path::Path;

/// Where to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceKind {
    /// burn's ndarray backend on the CPU.
    Cpu,
    /// burn's CUDA backend (needs the `cuda` cargo feature and an NVIDIA driver).
    Cuda,
}

impl DeviceKind {
    /// The lowercase name (`cpu`, `cuda`), as the CLI spells it and results record it.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Cuda => "cuda",
        }
    }
}

/// The CUDA backend (f32).
#[cfg(feature = "cuda")]
pub type CudaBackend = burn::backend::Cuda<f32, i32>;

/// The device that will actually be used for a request, and a warning when it differs.
pub fn resolve(requested: DeviceKind) -> (DeviceKind, Option<String>) {
    match requested {
        DeviceKind::Cpu => (DeviceKind::Cpu, None),
        DeviceKind::Cuda => match cuda_unavailable_reason() {
            None => (DeviceKind::Cuda, None),
            Some(why) => (
                DeviceKind::Cpu,
                Some(format!("CUDA is not available ({why}); running on the CPU")),
            ),
        },
    }
}

/// Why CUDA cannot be used here, or None when it can.
fn cuda_unavailable_reason() -> Option<String> {
    if !cfg!(feature = "cuda") {
        return Some("this build has no `cuda` feature".into());
    }
    if !nvidia_driver_present() {
        return Some("no NVIDIA driver found".into());
    }
    cuda_probe()
}

/// Whether an NVIDIA driver seems installed, from files alone (no CUDA call).
pub fn nvidia_driver_present() -> bool {
    const LIB_DIRS: &[&str] = &[
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
        "/usr/local/nvidia/lib64",
        "/usr/lib/wsl/lib",
        "/usr/lib/aarch64-linux-gnu",
    ];
    Path::new("/proc/driver/nvidia/version").exists()
        || LIB_DIRS
            .iter()
            .any(|d| Path::new(d).join("libcuda.so.1").exists())
}

/// Run one tiny CUDA operation, catching burn's panic when the runtime cannot start.
#[cfg(feature = "cuda")]
fn cuda_probe() -> Option<String> {
    let probe = std::panic::catch_unwind(|| {
        let device = Default::default();
        burn::tensor::Tensor::<CudaBackend, 1>::zeros([1], &device).into_data()
    });
    match probe {
        Ok(_) => None,
        Err(_) => Some("the CUDA runtime failed to start".into()),
    }
}

#[cfg(not(feature = "cuda"))]
fn cuda_probe() -> Option<String> {
    Some("this build has no `cuda` feature".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_always_cpu_and_cuda_falls_back_with_a_warning_when_missing() {
        assert_eq!(resolve(DeviceKind::Cpu), (DeviceKind::Cpu, None));
        let (kind, warning) = resolve(DeviceKind::Cuda);
        if kind == DeviceKind::Cpu {
            assert!(warning.unwrap().contains("CUDA is not available"));
        } else {
            assert!(warning.is_none());
        }
    }
}
