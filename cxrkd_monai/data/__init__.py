from .datalist import load_class_names, load_datalist
