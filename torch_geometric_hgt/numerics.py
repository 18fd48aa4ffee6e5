"""Constants the torch code and the C kernels share."""

#: scores above the row's largest by more than this are capped before
#: ``exp`` (the dense layers' softmax; e^80 is far inside float32's range);
#: the C kernels are built with the same cap
EXP_CAP = 80.0
