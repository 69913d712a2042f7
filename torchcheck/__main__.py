from torchcheck.cli import program

program()
