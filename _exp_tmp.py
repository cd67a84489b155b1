import time, numpy as np, torch
from torch import nn
from sklearn.datasets import load_digits
from skhydra import HydraDistilledClassifier
torch.set_num_threads(1)
X, y = load_digits(return_X_y=True)
X = (X[:300] / 16).astype(np.float32).reshape(-1, 1, 8, 8); y = y[:300]
class CNN(nn.Module):
    def __init__(self, channels=2):
        super().__init__()
        self.conv = nn.Conv2d(1, channels, 3); self.pool = nn.MaxPool2d(2)
    def forward(self, x):
        return self.pool(torch.relu(self.conv(x)))
def teacher(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(72, 10))
ts=[teacher(s) for s in range(3)]
t=time.time()
m = HydraDistilledClassifier(ts, body=CNN, body_params={"channels": 3}, phase1_epochs=2, max_epochs=3, random_state=0).fit(X, y)
print(time.time()-t, m.input_shape_, m.n_features_in_, m.net_.module_.heads.layers[0].weight.shape, m.net_.module_.scaler.loc.shape, m.predict_proba(X).shape, m.predict_members(X).shape)
print(m.get_params(deep=True)["body__channels"], 'body__channels' in m.get_params(deep=False))
print(m.classes_)
for s in ["feature","channel","global",None]:
    m2 = HydraDistilledClassifier(ts, body=CNN, input_scaling=s, phase1_epochs=1, max_epochs=1, random_state=0, augmentation=None).fit(X)
    print(s, m2.net_.module_.scaler.loc.shape, m2.net_.module_.scaler.scale.shape)
