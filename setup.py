from setuptools import find_packages, setup

setup(
    name="lt_det",
    version="0.1.0",
    description="Long-tailed object detection methods as one detectron2 project extension",
    packages=find_packages(include=["lt_det", "lt_det.*"]),
    python_requires=">=3.9",
    # torch, torchvision and detectron2 are installed by `make setup` (requirements.txt and
    # tools/install_detectron2.py): detectron2 is not on the registry under its own name.
    install_requires=[
        "numpy",
        "opencv-python-headless",
        "pycocotools>=2.0.2",
        "lvis>=0.5.3",
        "hotcoco>=1.3",
        "faster-coco-eval>=1.8",  # a second fast LVIS backend, checked against lvis-api in tests
        "matplotlib",
        "tabulate",
        "pyyaml",  # the benchmark's method list (configs/benchmark/methods.yaml)
        "shapely",  # detectron2's FixedSizeCrop on polygon masks: the LSJ lazy configs
    ],
    extras_require={
        # timm: detectron2 main's ViT backbone (configs/lazy/vitdet/ and its test)
        "test": ["pytest>=7", "timm"],
    },
)
