import torch

# The students in the tests are tiny: one thread avoids the oversubscription that makes
# two threads many times slower when another process shares the cores.
torch.set_num_threads(1)
