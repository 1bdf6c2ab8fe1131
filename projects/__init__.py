"""Extensions kept outside the ``mixedae`` package, OpenMMLab's
``projects/`` layout: each ``projects/<name>/<name>`` package is named in a
config's ``custom_imports`` (e.g. ``'projects.dense_vit.dense_vit'``)."""
