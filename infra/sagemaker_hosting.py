"""What SageMaker hosting offers the GPU image: the instance types it can run on and the host AMI.

Facts as data, read against AWS's own contract where AWS publishes one: the instance types come
from the ``ProductionVariantInstanceType`` enum of botocore's SageMaker service model (the one in
the installed botocore, so the list follows AWS's and cannot drift), kept to the families whose
NVIDIA GPU the image's torch build has kernels for. The tests hold ``IMAGE_TORCH_*`` to the
installed torch (the same pin as ``sagemaker_image/Dockerfile``) and ``INFERENCE_AMI``'s CUDA to
what botocore's documentation of ``ProductionVariantInferenceAmiVersion`` says it brings.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

IMAGE_TORCH_CUDA = "13.0"
"""The CUDA of the SageMaker image's torch (PyPI's torch 2.14.1 wheel for Linux: ``+cu130``)."""
IMAGE_CUDA_ARCHS = ("sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120")
"""The GPU architectures that wheel has kernels for (``torch._C._cuda_getArchFlags()``); no PTX."""
IMAGE_CPU_ARCH = "x86_64"
"""The image is built on ``python:3.11-slim`` for x86_64 hosts."""

INFERENCE_AMI = "al2023-ami-sagemaker-inference-gpu-4-1"
"""NVIDIA driver 580, CUDA 13.0. Without ``InferenceAmiVersion`` the g4dn, g5, p3, p4d and p4de hosts
get driver 470 (CUDA 11.4), which cannot run a CUDA 13 build: torch would see no GPU. Driver 580 is
the first that runs CUDA 13.0, and the only one of the AMIs offered that does (gpu-2 and gpu-2-1
bring 535 / CUDA 12.2, gpu-3-1 brings 550 / CUDA 12.4)."""


@dataclass(frozen=True)
class GpuFamily:
    gpu: str
    compute_capability: tuple[int, int] | None
    """None: this table does not know the family's GPU, so it is not offered."""
    cpu_arch: str = "x86_64"


GPU_FAMILIES: dict[str, GpuFamily] = {
    "p2": GpuFamily("NVIDIA K80", (3, 7)),
    "p3": GpuFamily("NVIDIA V100", (7, 0)),
    "g4dn": GpuFamily("NVIDIA T4", (7, 5)),
    "g5": GpuFamily("NVIDIA A10G", (8, 6)),
    "g6": GpuFamily("NVIDIA L4", (8, 9)),
    "g6e": GpuFamily("NVIDIA L40S", (8, 9)),
    "g7": GpuFamily("not documented here", None),
    "g7e": GpuFamily("NVIDIA RTX PRO 6000 Blackwell Server Edition", (12, 0)),
    "p4d": GpuFamily("NVIDIA A100 40 GB", (8, 0)),
    "p4de": GpuFamily("NVIDIA A100 80 GB", (8, 0)),
    "p5": GpuFamily("NVIDIA H100", (9, 0)),
    "p5e": GpuFamily("NVIDIA H200", (9, 0)),
    "p5en": GpuFamily("NVIDIA H200", (9, 0)),
    "p6-b200": GpuFamily("NVIDIA B200", (10, 0)),
    "p6-b300": GpuFamily("NVIDIA B300", (10, 3)),
    "p6e-gb200": GpuFamily("NVIDIA GB200", (10, 0), cpu_arch="arm64"),
}
"""Every GPU family of the hosting enum (``g*`` and ``p*``): a family AWS adds fails a test until it is here."""


def family_of(instance_type: str) -> str:
    """``ml.g4dn.xlarge`` -> ``g4dn``."""
    return instance_type.split(".")[1]


def is_gpu_family(family: str) -> bool:
    return family.startswith(("g", "p"))


def image_runs_on(family: GpuFamily) -> bool:
    """A cubin for sm_XY runs on a GPU of compute capability X.Z with Z >= Y; the wheel carries no PTX."""
    if family.compute_capability is None or family.cpu_arch != IMAGE_CPU_ARCH:
        return False
    major, minor = family.compute_capability
    compiled = [(int(arch[3:-1]), int(arch[-1])) for arch in IMAGE_CUDA_ARCHS]
    return any(arch_major == major and arch_minor <= minor for arch_major, arch_minor in compiled)


@cache
def hosting_instance_types() -> tuple[str, ...]:
    """Every real-time hosting instance type in the installed botocore's SageMaker model."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    return tuple(model.shape_for("ProductionVariantInstanceType").enum)


@cache
def gpu_instance_types() -> tuple[str, ...]:
    """The hosting instance types the image's CUDA build can run on, in the enum's order."""
    return tuple(
        instance_type
        for instance_type in hosting_instance_types()
        if (family := GPU_FAMILIES.get(family_of(instance_type))) is not None and image_runs_on(family)
    )


def gpu_families() -> tuple[str, ...]:
    """The families of ``gpu_instance_types()``, in order."""
    return tuple(dict.fromkeys(family_of(instance_type) for instance_type in gpu_instance_types()))
