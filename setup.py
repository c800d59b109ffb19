"""avjax: JAX/Flax audio-visual learning (multisensory features, ASMP)."""
from setuptools import find_packages, setup

setup(
    name="avjax",
    version="0.1.0",
    description="JAX/Flax reimplementation of the multisensory network and ASMP.",
    packages=find_packages(include=["avjax", "avjax.*", "data_pipelines", "data_pipelines.*", "configs"]),
    python_requires=">=3.10",
    install_requires=[
        "jax>=0.6,<0.13",
        "flax>=0.10,<0.13",
        "optax>=0.2.4,<0.3",
        "orbax-checkpoint>=0.11,<0.13",
        "grain>=0.2.10,<0.3",
        "jraph>=0.0.6.dev0",
        "ml_collections>=1.0,<2",
        "absl-py>=2.1",
        "numpy>=1.26",
        "scipy>=1.11",
        "tensorflow-datasets>=4.9.7,<5",  # only for its tf.train.Example proto; TensorFlow is not needed
        "protobuf>=4.25",
        "google-crc32c>=1.5",
        "pillow>=10",
        "av>=12",
        "soundfile>=0.12",
        "librosa>=0.10",
        "mir_eval>=0.7",
        "fast-bss-eval>=0.1.4",
        "tensorboardX>=2.6",
        "tqdm>=4.66",
        "matplotlib>=3.8",
        "h5py>=3.10",
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-timeout>=2.3"],
        "bench": ["torch>=2.3"],
    },
)
