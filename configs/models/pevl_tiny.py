_base_ = ['../_base_/models/pevl_tiny.py']
