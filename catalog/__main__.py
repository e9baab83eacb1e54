from catalog.entry import main

main()
