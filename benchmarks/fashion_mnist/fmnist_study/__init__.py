"""The Fashion-MNIST study of ``benchmarks/fashion_mnist/run.py``, one
module per concern:

* :mod:`.methods`: the methods and variants (config + overrides);
* :mod:`.data`: the evaluation images and the frozen encoder;
* :mod:`.pretrain`: pre-training with the Runner, and the recognition
  measurement of a pre-trained model;
* :mod:`.evaluate`: k-NN, linear probe and fine-tune of one encoder;
* :mod:`.stats`: means, paired differences and their intervals;
* :mod:`.report`: the markdown tables and the plots;
* :mod:`.store`: the per-run result files kept in the repository;
* :mod:`.cli`: the command line.
"""
