_base_ = ['../_base_/models/pevl_vit_l14.py']
