from setuptools import find_packages, setup


def parse_requirements(path):
    with open(path) as f:
        return [
            line.strip() for line in f
            if line.strip() and not line.startswith(('#', '-'))
        ]


def get_version():
    scope = {}
    with open('mixedae/version.py') as f:
        exec(f.read(), scope)
    return scope['__version__']


setup(
    name='mixedae',
    version=get_version(),
    description='Mixed Autoencoder (MixedAE, CVPR 2023) for OpenMMLab',
    long_description=open('README.md').read(),
    long_description_content_type='text/markdown',
    license='Apache License 2.0',
    packages=find_packages(
        exclude=('configs', 'tools', 'tests', 'benchmarks', 'projects',
                 'projects.*')),
    python_requires='>=3.8',
    install_requires=parse_requirements('requirements/runtime.txt'),
    extras_require={
        'mim': parse_requirements('requirements/mminstall.txt'),
        'tests': parse_requirements('requirements/tests.txt'),
        'optional': parse_requirements('requirements/optional.txt'),
    },
    zip_safe=False,
)
