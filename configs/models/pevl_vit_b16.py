_base_ = ['../_base_/models/pevl_vit_b16.py']
