"""The box encoding and its L1 loss: exact round trip, no vanishing pull on oversized boxes."""

from __future__ import annotations

import math

import torch
from torchvision.ops import generalized_box_iou_loss

from fabricdet.models.head import box_distances, decode_boxes
from fabricdet.models.losses import box_l1_loss, encode_boxes


def test_a_location_outside_a_thin_thread_can_predict_it_exactly() -> None:
    # a 2 px horizontal thread 12 px below a stride-32 location: FCOS-style positive side
    # distances cannot express it, the centre-offset / log-size encoding can
    point = torch.tensor([[48.0, 16.0]])
    stride = torch.tensor([32.0])
    thread = torch.tensor([[0.0, 27.0, 640.0, 29.0]])
    code = encode_boxes(thread, point, stride)  # (dx, dy, log w, log h) in strides
    # with a level scale of 1 the head's raw output is the encoding itself
    dist = box_distances(code.view(1, 4, 1, 1), torch.tensor(1.0), 32).view(1, 4)
    torch.testing.assert_close(decode_boxes(point, dist), thread)
    assert float(box_l1_loss(thread, thread, point, stride)) == 0.0


def test_l1_keeps_pulling_an_oversized_box_where_giou_fades() -> None:
    point, stride = torch.tensor([[100.0, 100.0]]), torch.tensor([8.0])
    target = torch.tensor([[90.0, 95.0, 110.0, 105.0]])
    log_size = torch.tensor([math.log(4000.0), math.log(3000.0)], requires_grad=True)
    half = torch.exp(log_size) / 2
    pred = torch.cat([point - half, point + half], -1)
    giou_grad = torch.autograd.grad(generalized_box_iou_loss(pred, target).sum(), log_size)[0]
    half = torch.exp(log_size) / 2
    pred = torch.cat([point - half, point + half], -1)
    l1_grad = torch.autograd.grad(box_l1_loss(pred, target, point, stride), log_size)[0]
    assert giou_grad.abs().max() < 1e-3  # the IoU term has all but stopped pulling
    torch.testing.assert_close(l1_grad, torch.ones(2))  # L1 pulls with full strength
