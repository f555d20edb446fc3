import os
os.environ.setdefault('KDD_DEVICE', 'cpu')
