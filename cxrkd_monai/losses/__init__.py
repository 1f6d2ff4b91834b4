from .aals import LabelSharpening, asymmetric_label_sharpening
