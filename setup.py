"""Installs seminar_tf, beam_pipelines and serving, plus the `seminar` console script."""
from setuptools import find_packages, setup

with open("requirements.txt", encoding="utf-8") as f:
    REQUIREMENTS = [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]

setup(
    name="seminar-tf",
    version="0.1.0",
    description=(
        "SEMINAR: lifelong multi-modal sequence model for CTR prediction and "
        "personalized search ranking, in TensorFlow/Keras"
    ),
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["seminar_tf", "seminar_tf.*", "beam_pipelines",
                                    "beam_pipelines.*", "serving", "serving.*"]),
    install_requires=REQUIREMENTS,
    entry_points={"console_scripts": ["seminar=seminar_tf.orchestration.cli:main"]},
)
